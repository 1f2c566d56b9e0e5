"""Zoom meetings as the compliance scan sees them, and the PATCH that tightens one.

Pure functions, no I/O. A meeting's security settings come from `GET /meetings/{id}`
(the listing has no settings); the PMI shows as `pmi` on the listing or `use_pmi` in the
settings. The passcode is read only to say whether there is one.
"""

from __future__ import annotations

from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import ExistingMeeting
from provisioner.providers.zoom.client import PROVIDER_NAME, JsonObject
from provisioner.providers.zoom.mapping import MARKER_PREFIX, generate_passcode, when


def _flag(settings: JsonObject, key: str) -> bool | None:
    value = settings.get(key)
    return value if isinstance(value, bool) else None


def existing_meeting(summary: JsonObject, detail: JsonObject, host_email: str) -> ExistingMeeting:
    """One upcoming meeting with the settings Zoom reports for it."""
    settings = detail.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    agenda = detail.get("agenda") or summary.get("agenda")
    created_by = (
        agenda.removeprefix(MARKER_PREFIX)
        if isinstance(agenda, str) and agenda.startswith(MARKER_PREFIX)
        else None
    )
    pmi = bool(summary.get("pmi") or detail.get("pmi")) or settings.get("use_pmi") is True
    return ExistingMeeting(
        provider=PROVIDER_NAME,
        provider_meeting_id=str(detail.get("id") or summary["id"]),
        host_email=str(detail.get("host_email") or host_email).lower(),
        topic=str(detail.get("topic") or summary.get("topic") or ""),
        start=when(detail.get("start_time") or summary.get("start_time")),
        passcode_set=bool(detail.get("password")),
        waiting_room=_flag(settings, "waiting_room"),
        sign_in_required=_flag(settings, "meeting_authentication"),
        join_before_host=_flag(settings, "join_before_host"),
        personal_meeting_id=pmi,
        created_by=created_by,
        reference={"host_email": host_email},
    )


def fix_body(
    meeting: ExistingMeeting, settings: MeetingSettings, *, authentication_option: str | None
) -> tuple[JsonObject, frozenset[Control]]:
    """The PATCH /meetings/{id} body that brings `meeting` up to `settings`, and the
    controls it changes. Only weaker settings are touched; a meeting already at least as
    strict gets an empty body."""
    body: JsonObject = {}
    patch: JsonObject = {}
    changed: set[Control] = set()
    if settings.passcode_required and meeting.passcode_set is False:
        body["password"] = generate_passcode()
        changed.add(Control.PASSCODE)
    if settings.waiting_room and meeting.waiting_room is not True:
        patch["waiting_room"] = True
        changed.add(Control.WAITING_ROOM)
    if settings.sign_in_required and meeting.sign_in_required is not True:
        patch["meeting_authentication"] = True
        if settings.sign_in_domains and authentication_option is not None:
            patch["authentication_option"] = authentication_option
            patch["authentication_domains"] = ",".join(settings.sign_in_domains)
        changed.add(Control.SIGN_IN_REQUIRED)
    if not settings.join_before_host and meeting.join_before_host is not False:
        patch["join_before_host"] = False
        changed.add(Control.JOIN_BEFORE_HOST)
    if patch:
        body["settings"] = patch
    return body, frozenset(changed)
