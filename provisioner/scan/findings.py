"""Which of a meeting's observed settings are weaker than the policy. Pure, no I/O.

A setting the provider does not report (None) is never flagged: the scan says "not
reported" rather than guess. A reused personal meeting ID is always weak, whatever the
policy, because provisioner's rule is one unique meeting per request.
"""

from __future__ import annotations

from enum import StrEnum

from provisioner.policy.model import MeetingSettings
from provisioner.providers.base import ExistingMeeting


class Weakness(StrEnum):
    """A weak setting, named as the scan reports it (stable: CSV and audit use these)."""

    NO_PASSCODE = "no_passcode"
    NO_WAITING_ROOM = "no_waiting_room"
    NO_SIGN_IN = "no_sign_in"
    JOIN_BEFORE_HOST = "join_before_host"
    PERSONAL_MEETING_ID = "personal_meeting_id"


def weaknesses(meeting: ExistingMeeting, policy: MeetingSettings) -> tuple[Weakness, ...]:
    """The settings of `meeting` that are weaker than `policy`, in a fixed order."""
    found: list[Weakness] = []
    if policy.passcode_required and meeting.passcode_set is False:
        found.append(Weakness.NO_PASSCODE)
    if policy.waiting_room and meeting.waiting_room is False:
        found.append(Weakness.NO_WAITING_ROOM)
    if policy.sign_in_required and meeting.sign_in_required is False:
        found.append(Weakness.NO_SIGN_IN)
    if not policy.join_before_host and meeting.join_before_host is True:
        found.append(Weakness.JOIN_BEFORE_HOST)
    if meeting.personal_meeting_id is True:
        found.append(Weakness.PERSONAL_MEETING_ID)
    return tuple(found)
