"""The meeting-request form: built from the effective policy, read back into `MeetingCreate`.

Locked controls are shown disabled with the reason; unlocked ones are choices whose empty
value means "what the policy says". Field names follow the API's body paths
(`settings.chat`), so a problem's `errors[].field` lands next to the right input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from provisioner.errors import FieldError
from provisioner.meetings.schemas import MeetingCreate

_BOOL = (("true", "on"), ("false", "off"))
CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "waiting_room": _BOOL,
    "sign_in_required": _BOOL,
    "join_before_host": _BOOL,
    "presenters": (("host_only", "host only"), ("everyone", "everyone")),
    "chat": (("off", "off"), ("host_only", "host only"), ("everyone", "everyone")),
    "mute_on_entry": _BOOL,
    "per_invitee_links": _BOOL,
}
_BOOL_FIELDS = {name for name, options in CHOICES.items() if options is _BOOL}
PLAIN_FIELDS = ("topic", "start", "duration_minutes", "timezone", "invitees", "provider")


@dataclass(frozen=True)
class ControlView:
    """One policy control as the form shows it."""

    name: str
    label: str
    current: str
    locked: bool
    reason: str
    options: tuple[tuple[str, str], ...]


@dataclass
class FormState:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


def _current(entry: Mapping[str, Any]) -> str:
    if "value" in entry:
        value = entry["value"]
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, list):
            return ", ".join(str(v) for v in value) or "any"
        return "any" if value is None else str(value).replace("_", " ")
    required = "required" if entry.get("required") else "optional"
    return f"{required}, at least {entry.get('min_length')} characters"


def control_views(policy: Mapping[str, Mapping[str, Any]]) -> list[ControlView]:
    """Every control of the effective policy, locked or a choice."""
    views = []
    for name, entry in policy.items():
        locked = bool(entry.get("locked")) or name not in CHOICES
        source = str(entry.get("source", "defaults"))
        reason = (
            f"Locked by the organisation policy ({source})"
            if entry.get("locked")
            else "Set by the policy; not chosen per meeting"
        )
        views.append(
            ControlView(
                name=name,
                label=name.replace("_", " ").capitalize(),
                current=_current(entry),
                locked=locked,
                reason=reason if locked else "",
                options=CHOICES.get(name, ()),
            )
        )
    return views


def _invitees(text: str) -> list[dict[str, str]]:
    """One invitee per line: `Name <email>` or a bare address."""
    people = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.endswith(">") and "<" in line:
            name, _, rest = line.rpartition("<")
            email = rest[:-1].strip()
            people.append({"email": email, "name": name.strip() or email.split("@")[0]})
        else:
            people.append({"email": line, "name": line.split("@")[0] or line})
    return people


def read_form(form: Mapping[str, str]) -> tuple[MeetingCreate | None, FormState]:
    """The submitted form as `MeetingCreate`, or the errors to show next to each field."""
    state = FormState(values={k: v for k, v in form.items() if k != "csrf_token"})
    settings: dict[str, Any] = {}
    for name in CHOICES:
        value = form.get(f"settings.{name}", "")
        if value:
            settings[name] = (value == "true") if name in _BOOL_FIELDS else value
    body: dict[str, Any] = {
        "topic": form.get("topic", ""),
        "start": form.get("start", ""),
        "duration_minutes": form.get("duration_minutes", ""),
        "timezone": form.get("timezone", ""),
        "invitees": _invitees(form.get("invitees", "")),
        "provider": form.get("provider") or None,
        "settings": settings or None,
    }
    try:
        return MeetingCreate.model_validate(body), state
    except ValidationError as exc:
        add_errors(
            state,
            (
                FieldError(".".join(str(p) for p in error["loc"]) or "body", error["msg"])
                for error in exc.errors()
            ),
        )
        return None, state


def form_key(path: str) -> str:
    """`invitees.2.email` / `invitees[2].email` -> `invitees`; `settings.chat` stays."""
    if path.startswith("settings."):
        return "settings." + path.split(".")[1].split("[")[0]
    head = path.split(".")[0].split("[")[0]
    if head in CHOICES:
        return f"settings.{head}"
    return head


def add_errors(state: FormState, errors: Iterable[FieldError]) -> None:
    known = set(PLAIN_FIELDS) | {f"settings.{name}" for name in CHOICES}
    for error in errors:
        key = form_key(error.field)
        if key in known:
            state.errors.setdefault(key, []).append(error.reason)
        else:
            state.general.append(f"{error.field}: {error.reason}")


def default_start(now: datetime) -> str:
    """Tomorrow at ten in the form's `datetime-local` format."""
    return now.replace(hour=10, minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")
