"""Provider-neutral settings to a Calendar event and a Meet space config, and back.

Pure functions, no I/O: the bodies Google Meet sends (`event_insert_body`, `space_config`)
and the comparison of the read-back event and space with what the policy asked for
(`observe`). The control-by-control table is in `provider.py`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import MeetingSpec, ObservedSettings, Participant
from provisioner.providers.errors import ProviderError
from provisioner.providers.google_meet.client import PROVIDER_NAME, JsonObject, safe_code

SPACE_MASK = ",".join(
    (
        "config.accessType",
        "config.moderation",
        "config.moderationRestrictions.chatRestriction",
        "config.moderationRestrictions.presentRestriction",
    )
)
LOCKDOWN_MASK = "config.accessType"


def derived_id(meeting_id: str, label: str) -> str:
    """A Calendar-valid id (base32hex: a-v, 0-9) that is the same for every retry."""
    digest = hashlib.sha256(f"provisioner/google_meet/{label}/{meeting_id}".encode()).digest()
    return base64.b32hexencode(digest[:20]).decode("ascii").lower()


def rfc3339(value: datetime) -> str:
    """UTC with a `Z`: unambiguous whatever `timeZone` says."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_times(spec: MeetingSpec) -> JsonObject:
    """What a reschedule changes: title and times (the conference stays)."""
    return {
        "summary": spec.topic,
        "start": {"dateTime": rfc3339(spec.start), "timeZone": spec.timezone},
        "end": {"dateTime": rfc3339(spec.end), "timeZone": spec.timezone},
    }


def event_insert_body(spec: MeetingSpec) -> JsonObject:
    """The events.insert body: our own id and requestId, so a retry cannot make a second
    event or conference; no attendees, so nobody bypasses knocking or gets Google's mail."""
    return event_times(spec) | {
        "id": derived_id(spec.meeting_id, "event"),
        "conferenceData": {
            "createRequest": {
                "requestId": derived_id(spec.meeting_id, "conference"),
                "conferenceSolutionKey": {"type": "hangoutsMeet"},
            }
        },
        # The link is a secret: hide the details from anyone browsing the calendar.
        "visibility": "private",
        "guestsCanInviteOthers": False,
        "guestsCanSeeOtherGuests": False,
    }


def access_type(settings: MeetingSettings, *, dial_in: bool) -> str:
    """Who joins without knocking. TRUSTED lets dial-in callers straight in, and they are
    not signed in, so a space with phone access needs RESTRICTED for sign-in too."""
    if settings.waiting_room or not settings.join_before_host:
        return "RESTRICTED"
    if settings.sign_in_required:
        return "RESTRICTED" if dial_in else "TRUSTED"
    return "OPEN"


def has_dial_in(space: Mapping[str, Any]) -> bool:
    """Whether the space has phone numbers (whose callers are never signed in)."""
    return bool(space.get("phoneAccess"))


def space_config(settings: MeetingSettings, *, dial_in: bool) -> JsonObject:
    """The `config` that applies `settings`; restrictions only bite when moderation is ON."""
    present = "HOSTS_ONLY" if settings.presenters is Presenters.HOST_ONLY else "NO_RESTRICTION"
    chat = "NO_RESTRICTION" if settings.chat is Chat.EVERYONE else "HOSTS_ONLY"
    moderated = settings.waiting_room or "HOSTS_ONLY" in (present, chat)
    return {
        "accessType": access_type(settings, dial_in=dial_in),
        "moderation": "ON" if moderated else "OFF",
        "moderationRestrictions": {"chatRestriction": chat, "presentRestriction": present},
    }


def requested(settings: MeetingSettings) -> frozenset[Control]:
    """The controls these settings restrict that Meet really applies (`enforced`)."""
    asked: set[Control] = set()
    if settings.waiting_room:
        asked.add(Control.WAITING_ROOM)
    if settings.sign_in_required:
        asked.add(Control.SIGN_IN_REQUIRED)
    if settings.presenters is Presenters.HOST_ONLY:
        asked.add(Control.PRESENTERS)
    if settings.chat is Chat.HOST_ONLY:
        asked.add(Control.CHAT)
    return frozenset(asked)


def section(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of a read-back, or an empty one: Google omits what is unset."""
    value = body.get(key)
    return value if isinstance(value, Mapping) else {}


def _shown(value: object) -> str:
    return "unset" if value is None else safe_code(value) or "an unexpected value"


def observe(
    settings: MeetingSettings, event: Mapping[str, Any], space: Mapping[str, Any]
) -> ObservedSettings:
    """Compare the read-back event and space with `settings`, control by control."""
    config = section(space, "config")
    restrictions = section(config, "moderationRestrictions")
    access = config.get("accessType")
    moderated = config.get("moderation") == "ON"
    guests = [
        a
        for a in event.get("attendees") or []
        if isinstance(a, Mapping) and not a.get("organizer") and not a.get("self")
    ]
    problems: dict[Control, str | None] = {}
    asked = requested(settings)
    if Control.WAITING_ROOM in asked:
        problems[Control.WAITING_ROOM] = (
            f"access type is {_shown(access)}"
            if access != "RESTRICTED"
            else "guests on the event join without knocking"
            if guests
            else None
        )
    if Control.SIGN_IN_REQUIRED in asked:
        problems[Control.SIGN_IN_REQUIRED] = (
            None
            if access == "RESTRICTED" or (access == "TRUSTED" and not has_dial_in(space))
            else "dial-in callers join without knocking"
            if access == "TRUSTED"
            else f"access type is {_shown(access)}"
        )
    for control, key in (
        (Control.PRESENTERS, "presentRestriction"),
        (Control.CHAT, "chatRestriction"),
    ):
        if control in asked:
            value = restrictions.get(key)
            problems[control] = (
                None
                if moderated and value == "HOSTS_ONLY"
                else "host management (moderation) is off"
                if not moderated
                else f"{key} is {_shown(value)}"
            )
    return ObservedSettings(
        confirmed=frozenset(c for c, problem in problems.items() if problem is None),
        mismatched={c: problem for c, problem in problems.items() if problem is not None},
    )


def meeting_code(event: Mapping[str, Any]) -> str | None:
    """The Meet code Calendar gave the event's conference (`conferenceId`)."""
    data = section(event, "conferenceData")
    solution = section(section(data, "conferenceSolution"), "key")
    code = data.get("conferenceId")
    if solution.get("type") not in (None, "hangoutsMeet") or not isinstance(code, str):
        return None
    return code or None


def conference_status(event: Mapping[str, Any]) -> str | None:
    request = section(section(event, "conferenceData"), "createRequest")
    status = section(request, "status").get("statusCode")
    return status if isinstance(status, str) else None


def space_id(space: Mapping[str, Any]) -> str:
    name = space.get("name")
    if not isinstance(name, str) or not name.startswith("spaces/") or "/" in name[7:]:
        raise ProviderError(
            f"{PROVIDER_NAME}: the space has no usable name", provider=PROVIDER_NAME
        )
    return name[len("spaces/") :]


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def participant(person: Mapping[str, Any]) -> Participant:
    """A Meet participant; Meet gives an account id, never an address, so no email."""
    who = (
        section(person, "signedinUser")
        or section(person, "anonymousUser")
        or section(person, "phoneUser")
    )
    name = who.get("displayName")
    ident = person.get("name")
    return Participant(
        name=name if isinstance(name, str) and name else "(unnamed)",
        email=None,
        joined_at=_when(person.get("earliestStartTime")),
        left_at=_when(person.get("latestEndTime")),
        provider_participant_id=ident if isinstance(ident, str) else None,
    )
