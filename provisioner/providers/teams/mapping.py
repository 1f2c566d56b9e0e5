"""Provider-neutral settings to Graph onlineMeeting properties, and read-backs to controls.

Pure functions, no I/O: the request bodies Teams sends (`create_or_get_body`,
`meeting_options`, `event_body`) and the comparison of what Graph reports with what the
policy asked for (`observe`). The control-by-control table is in `provider.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import MeetingSpec, ObservedSettings, Participant
from provisioner.providers.teams.client import JsonObject, safe_code

# Lobby scopes under which nobody outside the tenant (and nobody anonymous) bypasses it.
SIGNED_IN_SCOPES = frozenset({"organizer", "organization", "organizationExcludingGuests"})


def graph_time(value: datetime) -> str:
    """UTC with a `Z`, the form the subset's date-time pattern accepts."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lobby_scope(settings: MeetingSettings) -> str:
    """Who bypasses the lobby: the narrowest scope any setting asks for."""
    if settings.waiting_room or not settings.join_before_host:
        return "organizer"
    if settings.sign_in_required:
        return "organization"
    return "everyone"


def meeting_options(settings: MeetingSettings) -> JsonObject:
    """The PATCH body that applies `settings` (every property is in the Graph subset)."""
    options: JsonObject = {
        # Phone callers are not signed in: they must never skip the lobby.
        "lobbyBypassSettings": {"scope": lobby_scope(settings), "isDialInBypassEnabled": False},
        "allowedPresenters": "organizer"
        if settings.presenters is Presenters.HOST_ONLY
        else "everyone",
        "allowMeetingChat": "enabled" if settings.chat is Chat.EVERYONE else "disabled",
        "allowAttendeeToEnableMic": not settings.mute_on_entry,
    }
    if settings.passcode_required:
        options["joinMeetingIdSettings"] = {"isPasscodeRequired": True}
    return options


def requested(settings: MeetingSettings) -> frozenset[Control]:
    """The controls these settings restrict that Teams applies (what `enforced` claims)."""
    asked: set[Control] = set()
    if settings.passcode_required:
        asked.add(Control.PASSCODE)
    if settings.waiting_room:
        asked.add(Control.WAITING_ROOM)
    if not settings.join_before_host:
        asked.add(Control.JOIN_BEFORE_HOST)
    if settings.sign_in_required:
        asked.add(Control.SIGN_IN_REQUIRED)
    if settings.presenters is Presenters.HOST_ONLY:
        asked.add(Control.PRESENTERS)
    if settings.chat is not Chat.EVERYONE:
        asked.add(Control.CHAT)
    if settings.mute_on_entry:
        asked.add(Control.MUTE_ON_ENTRY)
    return frozenset(asked)


def _shown(value: object) -> str:
    """A read-back value fit for a mismatch description (enum-like tokens only)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return safe_code(value) or "an unexpected value"


def section(meeting: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of a read-back, or an empty one: Graph omits what is unset."""
    value = meeting.get(key)
    return value if isinstance(value, Mapping) else {}


def observe(settings: MeetingSettings, meeting: Mapping[str, Any]) -> ObservedSettings:
    """Compare a read-back onlineMeeting with `settings`, control by control."""
    lobby = section(meeting, "lobbyBypassSettings")
    scope = lobby.get("scope")
    dial_in = lobby.get("isDialInBypassEnabled") is True
    join_id = section(meeting, "joinMeetingIdSettings")
    problems: dict[Control, str | None] = {}
    asked = requested(settings)

    def lobby_problem(ok: bool) -> str | None:
        if not ok:
            return f"lobby bypass scope is {_shown(scope)}"
        return "dial-in callers bypass the lobby" if dial_in else None

    if Control.PASSCODE in asked:
        problems[Control.PASSCODE] = (
            None
            if join_id.get("isPasscodeRequired") is True and join_id.get("passcode")
            else "passcode not required"
            if join_id.get("isPasscodeRequired") is not True
            else "no passcode was generated"
        )
    if Control.WAITING_ROOM in asked:
        problems[Control.WAITING_ROOM] = lobby_problem(scope == "organizer")
    if Control.JOIN_BEFORE_HOST in asked:
        problems[Control.JOIN_BEFORE_HOST] = lobby_problem(scope == "organizer")
    if Control.SIGN_IN_REQUIRED in asked:
        problems[Control.SIGN_IN_REQUIRED] = lobby_problem(scope in SIGNED_IN_SCOPES)
    if Control.PRESENTERS in asked:
        presenters = meeting.get("allowedPresenters")
        problems[Control.PRESENTERS] = (
            None if presenters == "organizer" else f"presenters are {_shown(presenters)}"
        )
    if Control.CHAT in asked:
        chat = meeting.get("allowMeetingChat")
        problems[Control.CHAT] = None if chat == "disabled" else f"chat is {_shown(chat)}"
    if Control.MUTE_ON_ENTRY in asked:
        mic = meeting.get("allowAttendeeToEnableMic")
        problems[Control.MUTE_ON_ENTRY] = (
            None
            if mic is False
            else f"attendees may unmute (allowAttendeeToEnableMic {_shown(mic)})"
        )
    return ObservedSettings(
        confirmed=frozenset(c for c, problem in problems.items() if problem is None),
        mismatched={c: problem for c, problem in problems.items() if problem is not None},
    )


def create_or_get_body(spec: MeetingSpec) -> JsonObject:
    """createOrGet takes only these (and participants/chatInfo); options follow in a PATCH."""
    return {
        "externalId": spec.meeting_id,
        "subject": spec.topic,
        "startDateTime": graph_time(spec.start),
        "endDateTime": graph_time(spec.end),
    }


def event_times(spec: MeetingSpec) -> JsonObject:
    """Outlook's dateTimeTimeZone: a local time without offset plus the zone's name."""
    return {
        "subject": spec.topic,
        "start": {"dateTime": graph_time(spec.start)[:-1], "timeZone": "UTC"},
        "end": {"dateTime": graph_time(spec.end)[:-1], "timeZone": "UTC"},
    }


def event_body(spec: MeetingSpec) -> JsonObject:
    """An Outlook event with a Teams meeting and no attendees: we deliver ourselves, and
    attendees on the event would get Outlook's own invitation."""
    return event_times(spec) | {
        "isOnlineMeeting": True,
        "onlineMeetingProvider": "teamsForBusiness",
        "transactionId": transaction_id(spec.meeting_id),
        "allowNewTimeProposals": False,
        "responseRequested": False,
        "sensitivity": "private",
    }


def transaction_id(meeting_id: str) -> str:
    """The event's `transactionId`: stable per meeting, so Graph dedupes a retried POST."""
    return hashlib.sha256(f"provisioner/teams/event/{meeting_id}".encode()).hexdigest()[:36]


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def participant(record: Mapping[str, Any]) -> Participant:
    """An attendance record as a `Participant` (first join, last leave)."""
    identity = section(record, "identity")
    intervals = [i for i in record.get("attendanceIntervals") or [] if isinstance(i, dict)]
    joins = [t for t in (_when(i.get("joinDateTime")) for i in intervals) if t]
    leaves = [t for t in (_when(i.get("leaveDateTime")) for i in intervals) if t]
    email = record.get("emailAddress")
    name = identity.get("displayName")
    record_id = record.get("id")
    return Participant(
        name=name if isinstance(name, str) and name else "(unnamed)",
        email=email.strip().lower() if isinstance(email, str) and email else None,
        joined_at=min(joins) if joins else None,
        left_at=max(leaves) if leaves else None,
        provider_participant_id=record_id if isinstance(record_id, str) else None,
    )
