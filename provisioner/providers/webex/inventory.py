"""Webex meetings as the compliance scan sees them, and the PATCH that tightens one.

Pure functions, no I/O. Webex lists scheduled meetings with their settings, so no
per-meeting read is needed. Sign-in for meetings is a site setting the API neither sets
nor reports (`requireAttendeeLogin` is for webinars), so it is reported as unknown for
meetings, never guessed. A meeting in someone's personal room is Webex's form of a
reused personal meeting ID.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import ExistingMeeting
from provisioner.providers.webex.client import PROVIDER_NAME, JsonObject

TAG_PREFIX = "provisioner:"
LOBBY = "allowJoinWithLobby"
BLOCK = "blockFromJoin"
# No 0/O/o, 1/I/l/i: the passcode is read from an email and typed into a dialog.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _created_by(item: JsonObject) -> str | None:
    for tag in item.get("integrationTags") or []:
        if isinstance(tag, str) and tag.startswith(TAG_PREFIX):
            return tag.removeprefix(TAG_PREFIX)
    return None


def existing_meeting(item: JsonObject, host_email: str) -> ExistingMeeting:
    """One listed meeting with the settings Webex reports for it."""
    security = item.get("unlockedMeetingJoinSecurity")
    join_before = item.get("enabledJoinBeforeHost")
    webinar = item.get("scheduledType") == "webinar"
    login = item.get("requireAttendeeLogin")
    series = item.get("meetingSeriesId") or item.get("id")
    return ExistingMeeting(
        provider=PROVIDER_NAME,
        provider_meeting_id=str(item["id"]),
        host_email=str(item.get("hostEmail") or host_email).lower(),
        topic=str(item.get("title") or ""),
        start=_when(item.get("start")),
        passcode_set=bool(item.get("password")),
        waiting_room=security in (LOBBY, BLOCK) if isinstance(security, str) else None,
        sign_in_required=login if webinar and isinstance(login, bool) else None,
        join_before_host=join_before if isinstance(join_before, bool) else None,
        personal_meeting_id=item.get("scheduledType") == "personalRoomMeeting",
        created_by=_created_by(item),
        reference={"host_email": host_email, "series_id": str(series)},
    )


def generate_password(length: int) -> str:
    """Random password from `secrets` with the upper, lower and digit most sites demand."""
    while True:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if any(c.isupper() for c in code) and any(c.islower() for c in code):
            if any(c.isdigit() for c in code):
                return code


def fix_body(
    meeting: ExistingMeeting, settings: MeetingSettings, *, password_length: int
) -> tuple[JsonObject, frozenset[Control]]:
    """The PATCH /meetings/{id} body that brings `meeting` up to `settings` (only the
    weaker settings), and the controls it changes. Sign-in is not settable per meeting."""
    body: JsonObject = {}
    changed: set[Control] = set()
    if settings.passcode_required and meeting.passcode_set is False:
        body["password"] = generate_password(password_length)
        changed.add(Control.PASSCODE)
    if settings.waiting_room and meeting.waiting_room is not True:
        body["unlockedMeetingJoinSecurity"] = LOBBY
        changed.add(Control.WAITING_ROOM)
    if not settings.join_before_host and meeting.join_before_host is not False:
        body["enabledJoinBeforeHost"] = False
        body["enableConnectAudioBeforeHost"] = False
        changed.add(Control.JOIN_BEFORE_HOST)
    return body, frozenset(changed)
