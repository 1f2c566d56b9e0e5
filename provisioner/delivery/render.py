"""Shared wording and the Jinja2 environment for messages sent to people.

Channels render their own messages, but the words that matter for safety (when the
meeting is, what the provider enforced, what the host must do by hand) are decided
here once, so an email and a chat message never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_PROVIDER_NAMES = {
    "google_meet": "Google Meet",
    "jitsi": "Jitsi",
    "teams": "Microsoft Teams",
    "webex": "Webex",
    "zoom": "Zoom",
}

# (what could not be enforced, what the host can do about it by hand)
_NOT_ENFORCED_ADVICE: dict[Control, tuple[str, str]] = {
    Control.PASSCODE: ("passcode", "set one from the meeting's security options"),
    Control.WAITING_ROOM: ("waiting room", "turn it on from the meeting's security options"),
    Control.SIGN_IN_REQUIRED: (
        "sign-in requirement",
        "admit only people you recognise, and remove anyone else",
    ),
    Control.JOIN_BEFORE_HOST: (
        "no joining before the host",
        "join a few minutes early to be there first",
    ),
    Control.PRESENTERS: (
        "host-only screen sharing",
        "limit sharing to the host from the security options",
    ),
    Control.CHAT: ("chat restriction", "turn chat off or limit it from the security options"),
    Control.MUTE_ON_ENTRY: ("mute on entry", "mute everyone once the meeting starts"),
    Control.PER_INVITEE_LINKS: (
        "personal links",
        "everyone has the same link, so anyone holding it can join",
    ),
    Control.INVITEE_DOMAINS: (
        "invitee domain restriction",
        "check the participant list against your invitees",
    ),
    Control.MAX_DURATION: ("maximum duration", "end the meeting for everyone when you are done"),
}


def default_template_dir() -> Path:
    """The project's `templates/` folder, next to the `provisioner` package.

    Found from this file rather than the working directory, so the CLI and the worker
    render the same templates wherever they are started. To use other templates, pass
    another folder to `make_template_environment`.

    Raises:
        FileNotFoundError: the folder is missing (e.g. a wheel installed without it).
    """
    directory = Path(__file__).resolve().parents[2] / "templates"
    if not directory.is_dir():
        raise FileNotFoundError(f"template folder {directory} does not exist")
    return directory


def make_template_environment(template_dir: Path) -> jinja2.Environment:
    """A Jinja2 environment for message templates under `template_dir`.

    HTML and XML templates are autoescaped because topics and names come from users;
    plain-text templates are not (there is nothing to escape, and escaping would show
    `&amp;` to the reader). StrictUndefined turns a misspelt variable into an error
    instead of a silently missing join link.
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["datetime"] = format_meeting_time
    return environment


def meeting_zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`.

    Raises:
        ValueError: no such zone (also for malformed names such as paths).
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def format_meeting_time(start: datetime, timezone: str, end: datetime | None = None) -> str:
    """When a meeting happens, in the meeting's own zone, in plain English.

    `Tuesday 1 December 2026, 14:00–15:00 CET (Europe/Berlin)`. Day and month names
    are spelt out here rather than with `strftime("%A")`, whose output depends on the
    process locale.
    """
    zone = meeting_zone(timezone)
    local_start = start.astimezone(zone)
    start_abbr = local_start.tzname() or timezone
    suffix = "" if start_abbr == timezone else f" ({timezone})"
    if end is None:
        return f"{_day(local_start)}, {local_start:%H:%M} {start_abbr}{suffix}"
    local_end = end.astimezone(zone)
    end_abbr = local_end.tzname() or timezone
    if local_end.date() != local_start.date():
        return (
            f"{_day(local_start)}, {local_start:%H:%M} {start_abbr} – "
            f"{_day(local_end)}, {local_end:%H:%M} {end_abbr}{suffix}"
        )
    if start_abbr != end_abbr:  # the clocks change during the meeting
        return (
            f"{_day(local_start)}, {local_start:%H:%M} {start_abbr}–"
            f"{local_end:%H:%M} {end_abbr}{suffix}"
        )
    return f"{_day(local_start)}, {local_start:%H:%M}–{local_end:%H:%M} {start_abbr}{suffix}"


def _day(moment: datetime) -> str:
    return f"{_WEEKDAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def single_line(text: str) -> str:
    """`text` with every run of whitespace or control characters turned into one space.

    Names and topics come from users and end up in headers, subjects and calendar
    fields, where a line break could start a new header or property.
    """
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def provider_label(provider: str) -> str:
    """The name people know a provider by (`teams` -> `Microsoft Teams`)."""
    return _PROVIDER_NAMES.get(provider, provider.replace("_", " ").title())


def describe_enforced(settings: MeetingSettings, not_enforced: Iterable[Control]) -> list[str]:
    """One sentence per protective setting the provider applied, for the host.

    Controls in `not_enforced` are left out: they are reported with advice instead,
    so the host is never told a control is on when it is not.
    """
    skip = set(not_enforced)
    lines: list[tuple[Control, str]] = []
    if settings.passcode_required:
        lines.append((Control.PASSCODE, "A passcode is needed to join."))
    if settings.waiting_room:
        lines.append((Control.WAITING_ROOM, "People wait in a waiting room until admitted."))
    if settings.sign_in_required:
        where = (
            f" with an account at {', '.join(settings.sign_in_domains)}"
            if settings.sign_in_domains
            else ""
        )
        lines.append((Control.SIGN_IN_REQUIRED, f"Participants must sign in{where}."))
    if not settings.join_before_host:
        lines.append((Control.JOIN_BEFORE_HOST, "Nobody can join before the host."))
    if settings.presenters is Presenters.HOST_ONLY:
        lines.append((Control.PRESENTERS, "Only the host can share their screen."))
    if settings.chat is Chat.OFF:
        lines.append((Control.CHAT, "Chat is off."))
    elif settings.chat is Chat.HOST_ONLY:
        lines.append((Control.CHAT, "Only the host can send chat messages."))
    if settings.mute_on_entry:
        lines.append((Control.MUTE_ON_ENTRY, "Participants are muted when they join."))
    if settings.per_invitee_links:
        lines.append((Control.PER_INVITEE_LINKS, "Each invitee has a personal link."))
    if settings.invitee_domains:
        lines.append(
            (
                Control.INVITEE_DOMAINS,
                f"Invitations go only to {', '.join(settings.invitee_domains)}.",
            )
        )
    lines.append(
        (
            Control.MAX_DURATION,
            f"The meeting lasts at most {settings.max_duration_minutes} minutes.",
        )
    )
    return [text for control, text in lines if control not in skip]


def describe_not_enforced(not_enforced: Iterable[Control]) -> list[tuple[str, str]]:
    """(control, what the host can do by hand) for each control the provider could not
    enforce, in a stable order so messages do not change between retries."""
    missing = set(not_enforced)
    return [_NOT_ENFORCED_ADVICE[control] for control in Control if control in missing]
