"""The policy in Zoom's words, both ways: request bodies out, read-back comparison in.

Pure functions, no I/O, so the mapping can be read (and tested) on its own. What each
control becomes, and why some are only claimed conditionally, is in `provider.py`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import MeetingSpec, ProvisionedMeeting
from provisioner.providers.zoom.client import JsonObject
from provisioner.providers.zoom.config import ZOOM_MAX_PASSCODE

MARKER_PREFIX = "provisioner:"
MANUAL_APPROVAL = 1  # self-registrations wait for the host; ours are auto-approved
NO_REGISTRATION = 2
# No 0/O/o, 1/I/l/i: the passcode is read from an email and typed into a dialog. All are in
# Zoom's allowed set [a-zA-Z0-9@-_*!].
_UPPER = "ABCDEFGHJKMNPQRSTUVWXYZ"
_LOWER = "abcdefghjkmnpqrstuvwxyz"
_DIGITS = "23456789"
HOST_SETTINGS_UNREADABLE = "the host's settings could not be read (scope user:read:admin?)"


def generate_passcode(length: int = ZOOM_MAX_PASSCODE) -> str:
    """Random passcode from `secrets` meeting common account rules: upper, lower and digit,
    and no run of three sequential or repeated characters."""
    alphabet = _UPPER + _LOWER + _DIGITS
    while True:
        code = "".join(secrets.choice(alphabet) for _ in range(length))
        if not all(any(c in group for c in code) for group in (_UPPER, _LOWER, _DIGITS)):
            continue
        if not any(
            abs(ord(b) - ord(a)) <= 1 and ord(b) - ord(a) == ord(c) - ord(b)
            for a, b, c in zip(code, code[1:], code[2:], strict=False)
        ):
            return code


def marker(meeting_id: str) -> str:
    """Our id in the meeting's agenda: findable after an ambiguous create, and not secret."""
    return MARKER_PREFIX + meeting_id


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def in_meeting_settings(user_settings: JsonObject) -> JsonObject:
    value = user_settings.get("in_meeting")
    return value if isinstance(value, dict) else {}


# -- out: request bodies --------------------------------------------------------------


def settings_body(settings: MeetingSettings, *, authentication_option: str | None) -> JsonObject:
    body: JsonObject = {
        "use_pmi": False,
        "waiting_room": settings.waiting_room,
        "join_before_host": settings.join_before_host,
        "mute_upon_entry": settings.mute_on_entry,
        "meeting_authentication": settings.sign_in_required,
        "approval_type": MANUAL_APPROVAL if settings.per_invitee_links else NO_REGISTRATION,
        # We deliver every message ourselves, privately.
        "email_notification": False,
        "registrants_email_notification": False,
        "registrants_confirmation_email": False,
    }
    if settings.sign_in_required and settings.sign_in_domains:
        body["authentication_option"] = authentication_option
        body["authentication_domains"] = ",".join(settings.sign_in_domains)
    if settings.per_invitee_links:
        body["registration_type"] = 1  # register once (type 2 meetings have one date)
        body["show_share_button"] = False
    return body


def meeting_body(
    spec: MeetingSpec, *, passcode: str | None, authentication_option: str | None
) -> JsonObject:
    """POST /users/{userId}/meetings (and, without `type`, the PATCH of a reschedule)."""
    body: JsonObject = {
        "topic": spec.topic[:200],
        "type": 2,
        "start_time": utc(spec.start),
        "duration": math.ceil(spec.duration.total_seconds() / 60),
        "timezone": spec.timezone,
        "agenda": marker(spec.meeting_id),
        "settings": settings_body(spec.settings, authentication_option=authentication_option),
    }
    if passcode is not None:
        body["password"] = passcode
        body["default_password"] = False
    return body


def registrant_body(email: str, name: str) -> JsonObject:
    parts = name.split(None, 1)  # "Ann Lee" -> first_name "Ann", last_name "Lee"
    first = parts[0] if parts else email.partition("@")[0]
    body: JsonObject = {"email": email, "first_name": first[:64], "auto_approve": True}
    if len(parts) > 1:
        body["last_name"] = parts[1][:64]
    return body


# -- in: read-back comparison ---------------------------------------------------------


def presenters_ok(wanted: Presenters, in_meeting: JsonObject | None) -> bool:
    """Whether the host's own setting is at least as strict (None: it could not be read)."""
    if wanted is Presenters.EVERYONE:
        return True
    if in_meeting is None:
        return False
    if in_meeting.get("screen_sharing") is False:
        return True
    return in_meeting.get("who_can_share_screen") == "host"


def chat_ok(wanted: Chat, in_meeting: JsonObject | None) -> bool:
    """`allow_participants_chat_with`: 1 = no one, 2 = host and co-hosts only."""
    if wanted is Chat.EVERYONE:
        return True
    if in_meeting is None:
        return False
    if in_meeting.get("chat") is False:
        return True
    limit = in_meeting.get("allow_participants_chat_with")
    return limit == 1 if wanted is Chat.OFF else limit in (1, 2)


def _domains(text: object) -> set[str]:
    if not isinstance(text, str):
        return set()
    return {d.strip().lower() for d in text.replace(";", ",").split(",") if d.strip()}


def compare(
    spec: MeetingSpec,
    created: ProvisionedMeeting,
    meeting: JsonObject,
    in_meeting: JsonObject | None,
    registrants: Sequence[JsonObject],
    *,
    authentication_option: str | None,
) -> dict[Control, str]:
    """Each control whose read-back is weaker than the policy, with what Zoom reports
    (never a passcode or a link)."""
    settings = spec.settings
    observed = meeting.get("settings")
    observed = observed if isinstance(observed, dict) else {}
    found: dict[Control, str] = {}
    password = meeting.get("password") or ""
    if settings.passcode_required:
        if not password:
            found[Control.PASSCODE] = "the meeting has no passcode"
        elif password != created.host.passcode:
            found[Control.PASSCODE] = "the passcode differs from the one issued"
        elif len(password) < settings.passcode_min_length:
            found[Control.PASSCODE] = f"the passcode is shorter than {settings.passcode_min_length}"
    if settings.waiting_room and observed.get("waiting_room") is not True:
        found[Control.WAITING_ROOM] = "waiting_room is off"
    if not settings.join_before_host and observed.get("join_before_host") is not False:
        found[Control.JOIN_BEFORE_HOST] = "join_before_host is on"
    if settings.mute_on_entry and observed.get("mute_upon_entry") is not True:
        found[Control.MUTE_ON_ENTRY] = "mute_upon_entry is off"
    if settings.sign_in_required:
        if observed.get("meeting_authentication") is not True:
            found[Control.SIGN_IN_REQUIRED] = "meeting_authentication is off"
        elif settings.sign_in_domains:
            domains = _domains(observed.get("authentication_domains"))
            allowed = {d.lower() for d in settings.sign_in_domains}
            option = observed.get("authentication_option")
            if option != authentication_option or not domains or not domains <= allowed:
                found[Control.SIGN_IN_REQUIRED] = (
                    "sign-in is not limited to the policy's domains "
                    f"(authentication_domains {sorted(domains)})"
                )
    if settings.per_invitee_links:
        problem = registrant_problem(spec, created, observed, registrants)
        if problem:
            found[Control.PER_INVITEE_LINKS] = problem
    if not presenters_ok(settings.presenters, in_meeting):
        found[Control.PRESENTERS] = (
            HOST_SETTINGS_UNREADABLE
            if in_meeting is None
            else f"the host's who_can_share_screen is {in_meeting.get('who_can_share_screen')!r}"
        )
    if not chat_ok(settings.chat, in_meeting):
        found[Control.CHAT] = (
            HOST_SETTINGS_UNREADABLE
            if in_meeting is None
            else "the host's chat setting allows participants to chat with "
            f"{in_meeting.get('allow_participants_chat_with', 'everyone')!r}"
        )
    return found


def registrant_problem(
    spec: MeetingSpec,
    created: ProvisionedMeeting,
    observed: JsonObject,
    registrants: Sequence[JsonObject],
) -> str | None:
    """What, if anything, keeps each invitee from having their own, delivered link."""
    if observed.get("approval_type") != MANUAL_APPROVAL:
        return f"registration approval_type is {observed.get('approval_type')!r}, not manual"
    links = {str(r.get("email", "")).lower(): r.get("join_url") for r in registrants}
    wanted = {p.email.strip().lower() for p in spec.invitees}
    missing = [email for email in wanted if not links.get(email)]
    if missing:
        return f"{len(missing)} invitee(s) have no approved registrant"
    urls = [links[email] for email in wanted]
    if len(set(urls)) != len(urls):
        return "registrants share a join link"
    issued = created.personal
    if any(email not in issued or issued[email].url != links[email] for email in wanted):
        return "registrant links differ from the ones issued"
    return None
