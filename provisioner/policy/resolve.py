"""Resolve the policy for one requester: org defaults, then their groups, then the request.

Security comes first at every layer. When several of the user's groups set one control the
strictest value wins and any lock wins, whatever order the groups claim lists them in (a
user must not be able to weaken their meetings by joining a group). A request may always
tighten a setting but may loosen only an unlocked one. Every violation is collected before
raising, so one refusal names all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Annotated, Generic, TypeAlias, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool

from provisioner.errors import FieldError
from provisioner.policy.document import (
    ANY_DOMAIN,
    Domain,
    Enforcement,
    GroupPolicy,
    PasscodeLength,
    PolicyDefaults,
    PolicyDocument,
    domain_name,
)
from provisioner.policy.errors import InvalidPolicy, PolicyViolation, Violation
from provisioner.policy.model import Chat, Control, EffectivePolicy, MeetingSettings, Presenters

T = TypeVar("T")
M = TypeVar("M")

Domains: TypeAlias = frozenset[str] | None
"""A set of allowed domains; None means any domain."""


def _domain_or_any(value: str) -> str:
    return value if value == ANY_DOMAIN else domain_name(value)


def _invitee_domain_list(values: list[str]) -> list[str]:
    if not values:
        raise ValueError(f"list at least one domain, or [{ANY_DOMAIN!r}] for any")
    if ANY_DOMAIN in values and len(values) != 1:
        raise ValueError(f"{ANY_DOMAIN!r} means any domain and must be the only entry")
    return list(dict.fromkeys(values))


class SettingsRequest(BaseModel):
    """Meeting settings a requester asks for, as the `settings` of the meeting-create body.

    Every field is optional: left out (or null) keeps what the policy resolves to.
    `sign_in_domains: []` asks for any signed-in account; `invitee_domains: ["*"]` asks for
    any invitee domain. Booleans are strict so `"false"` is not read as a setting.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    passcode_required: StrictBool | None = None
    passcode_min_length: PasscodeLength | None = None
    waiting_room: StrictBool | None = None
    sign_in_required: StrictBool | None = None
    sign_in_domains: list[Domain] | None = None
    join_before_host: StrictBool | None = None
    presenters: Presenters | None = None
    chat: Chat | None = None
    mute_on_entry: StrictBool | None = None
    per_invitee_links: StrictBool | None = None
    invitee_domains: (
        Annotated[
            list[Annotated[str, AfterValidator(_domain_or_any)]],
            AfterValidator(_invitee_domain_list),
        ]
        | None
    ) = None


class _Unset(Enum):
    """A layer that says nothing about a setting (None is a real value for domain sets)."""

    UNSET = "unset"


_UNSET = _Unset.UNSET


@dataclass(frozen=True)
class _Order(Generic[T]):
    """How one setting's values compare for strictness."""

    meet: Callable[[Sequence[T]], T]  # the strictest of several values
    covers: Callable[[T, T], bool]  # covers(a, b): a is at least as strict as b


def _ranked(rank: Callable[[T], int]) -> _Order[T]:
    """A total order; a lower rank is stricter."""
    return _Order(meet=lambda values: min(values, key=rank), covers=lambda a, b: rank(a) <= rank(b))


def _meet_domains(values: Sequence[Domains]) -> Domains:
    # Several lists meet in their intersection: only a domain every group allows survives.
    limited = [value for value in values if value is not None]
    return frozenset.intersection(*limited) if limited else None


def _covers_domains(stricter: Domains, looser: Domains) -> bool:
    return looser is None or (stricter is not None and stricter <= looser)


_TRUE_STRICTER: _Order[bool] = _ranked(lambda value: 0 if value else 1)
_FALSE_STRICTER: _Order[bool] = _ranked(lambda value: 1 if value else 0)
_HIGHER_STRICTER: _Order[int] = _ranked(lambda value: -value)
_LOWER_STRICTER: _Order[int] = _ranked(lambda value: value)
# Spelled out rather than taken from declaration order, so reordering an enum is harmless.
_PRESENTERS: _Order[Presenters] = _ranked((Presenters.HOST_ONLY, Presenters.EVERYONE).index)
_CHAT: _Order[Chat] = _ranked((Chat.OFF, Chat.HOST_ONLY, Chat.EVERYONE).index)
_SUBSET: _Order[Domains] = _Order(meet=_meet_domains, covers=_covers_domains)


def _given(value: T | None) -> T | _Unset:
    return _UNSET if value is None else value


def _from(override: M | None, pick: Callable[[M], T | None]) -> T | _Unset:
    return _UNSET if override is None else _given(pick(override))


def _domains(values: Sequence[str] | None) -> Domains:
    return None if values is None else frozenset(values)


def _sign_in(values: Sequence[str]) -> Domains:
    return frozenset(values) or None  # an empty list accepts any signed-in account


def _group_sign_in(group: GroupPolicy) -> Domains | _Unset:
    override = group.sign_in_required
    if override is None or override.allowed_domains is None:
        return _UNSET
    return _sign_in(override.allowed_domains)


def _group_invitees(group: GroupPolicy) -> Domains | _Unset:
    override = group.invitee_domains
    if override is None or not override.sets_value:
        return _UNSET
    return _domains(override.value)


def _request_sign_in(request: SettingsRequest) -> Domains | _Unset:
    values = request.sign_in_domains
    return _UNSET if values is None else _sign_in(values)


def _request_invitees(request: SettingsRequest) -> Domains | _Unset:
    values = request.invitee_domains
    if values is None:
        return _UNSET
    return None if values == [ANY_DOMAIN] else frozenset(values)


def describe(value: object) -> str:
    """A policy value for people: in violations, the report and the CLI."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "any domain"
    if isinstance(value, frozenset | tuple | list):
        return ", ".join(sorted(str(item) for item in value)) or "no domain"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


@dataclass(frozen=True)
class _Field(Generic[T]):
    """One `MeetingSettings` field: its control, order and where each layer keeps it."""

    name: str  # the attribute on MeetingSettings and SettingsRequest
    control: Control
    order: _Order[T]
    default: Callable[[PolicyDefaults], T]
    group: Callable[[GroupPolicy], T | _Unset]
    request: Callable[[SettingsRequest], T | _Unset]


_PASSCODE_REQUIRED = _Field(
    "passcode_required",
    Control.PASSCODE,
    _TRUE_STRICTER,
    lambda d: d.passcode.required,
    lambda g: _from(g.passcode, lambda o: o.required),
    lambda r: _given(r.passcode_required),
)
_PASSCODE_MIN_LENGTH = _Field(
    "passcode_min_length",
    Control.PASSCODE,
    _HIGHER_STRICTER,
    lambda d: d.passcode.min_length,
    lambda g: _from(g.passcode, lambda o: o.min_length),
    lambda r: _given(r.passcode_min_length),
)
_WAITING_ROOM = _Field(
    "waiting_room",
    Control.WAITING_ROOM,
    _TRUE_STRICTER,
    lambda d: d.waiting_room.value,
    lambda g: _from(g.waiting_room, lambda o: o.value),
    lambda r: _given(r.waiting_room),
)
_SIGN_IN_REQUIRED = _Field(
    "sign_in_required",
    Control.SIGN_IN_REQUIRED,
    _TRUE_STRICTER,
    lambda d: d.sign_in_required.value,
    lambda g: _from(g.sign_in_required, lambda o: o.value),
    lambda r: _given(r.sign_in_required),
)
_SIGN_IN_DOMAINS = _Field(
    "sign_in_domains",
    Control.SIGN_IN_REQUIRED,
    _SUBSET,
    lambda d: _sign_in(d.sign_in_required.allowed_domains),
    _group_sign_in,
    _request_sign_in,
)
_JOIN_BEFORE_HOST = _Field(
    "join_before_host",
    Control.JOIN_BEFORE_HOST,
    _FALSE_STRICTER,
    lambda d: d.join_before_host.value,
    lambda g: _from(g.join_before_host, lambda o: o.value),
    lambda r: _given(r.join_before_host),
)
_PRESENTERS_FIELD = _Field(
    "presenters",
    Control.PRESENTERS,
    _PRESENTERS,
    lambda d: d.presenters.value,
    lambda g: _from(g.presenters, lambda o: o.value),
    lambda r: _given(r.presenters),
)
_CHAT_FIELD = _Field(
    "chat",
    Control.CHAT,
    _CHAT,
    lambda d: d.chat.value,
    lambda g: _from(g.chat, lambda o: o.value),
    lambda r: _given(r.chat),
)
_MUTE_ON_ENTRY = _Field(
    "mute_on_entry",
    Control.MUTE_ON_ENTRY,
    _TRUE_STRICTER,
    lambda d: d.mute_on_entry.value,
    lambda g: _from(g.mute_on_entry, lambda o: o.value),
    lambda r: _given(r.mute_on_entry),
)
_PER_INVITEE_LINKS = _Field(
    "per_invitee_links",
    Control.PER_INVITEE_LINKS,
    _TRUE_STRICTER,
    lambda d: d.per_invitee_links.value,
    lambda g: _from(g.per_invitee_links, lambda o: o.value),
    lambda r: _given(r.per_invitee_links),
)
_INVITEE_DOMAINS = _Field(
    "invitee_domains",
    Control.INVITEE_DOMAINS,
    _SUBSET,
    lambda d: _domains(d.invitee_domains.value),
    _group_invitees,
    _request_invitees,
)
# The request sets no maximum; a longer `duration_minutes` is handled on its own.
_MAX_DURATION = _Field(
    "max_duration_minutes",
    Control.MAX_DURATION,
    _LOWER_STRICTER,
    lambda d: d.max_duration_minutes.value,
    lambda g: _from(g.max_duration_minutes, lambda o: o.value),
    lambda r: _UNSET,
)


def _group_label(names: Sequence[str]) -> str:
    return ("group " if len(names) == 1 else "groups ") + ", ".join(names)


@dataclass(frozen=True)
class _Binding:
    """How one control binds a request after defaults and groups."""

    locked: bool
    locked_by: str  # for messages: "org defaults", "group executives"
    enforcement: Enforcement


class _Resolver:
    """One resolution in progress: layers in, sources and violations collected."""

    def __init__(
        self, document: PolicyDocument, groups: Sequence[str], request: SettingsRequest | None
    ) -> None:
        if isinstance(groups, str):
            raise TypeError("groups must be a sequence of group names, not one string")
        self._defaults = document.defaults
        # Sorted so the outcome cannot depend on the order of the groups claim.
        self._groups = [
            (name, document.groups[name]) for name in sorted(set(groups) & set(document.groups))
        ]
        self._request = request
        self._bindings = {control: self._bind(control) for control in Control}
        self._sources: dict[Control, set[str]] = {control: set() for control in Control}
        self.violations: list[Violation] = []

    def _bind(self, control: Control) -> _Binding:
        default = self._defaults.setting(control)
        overrides = [
            (name, override)
            for name, group in self._groups
            if (override := group.override(control)) is not None
        ]
        lockers = [name for name, override in overrides if override.locked is True]
        unlockers = [name for name, override in overrides if override.locked is False]
        if lockers:
            locked, locked_by = True, _group_label(lockers)
        elif unlockers:
            locked, locked_by = False, _group_label(unlockers)
        else:
            locked, locked_by = default.locked, "org defaults"
        levels = [o.enforcement for _, o in overrides if o.enforcement is not None]
        if Enforcement.REQUIRED in levels:
            enforcement = Enforcement.REQUIRED
        elif levels:
            enforcement = Enforcement.REPORT
        else:
            enforcement = default.enforcement
        return _Binding(locked, locked_by, enforcement)

    def field(self, spec: _Field[T]) -> T:
        """Layer one field: the default, the strictest group value, then the request."""
        value = spec.default(self._defaults)
        candidates: list[tuple[str, T]] = []
        for name, group in self._groups:
            picked = spec.group(group)
            if not isinstance(picked, _Unset):
                candidates.append((name, picked))
        sources = {"defaults"}
        if candidates:
            value = spec.order.meet([candidate for _, candidate in candidates])
            deciders = [name for name, candidate in candidates if candidate == value]
            sources = {f"group:{name}" for name in deciders or [n for n, _ in candidates]}
        requested = _UNSET if self._request is None else spec.request(self._request)
        if not isinstance(requested, _Unset) and requested != value:
            binding = self._bindings[spec.control]
            if spec.order.covers(requested, value) or not binding.locked:
                value, sources = requested, {"request"}
            else:
                allowed = describe(value)
                self.violations.append(
                    Violation(
                        field=f"settings.{spec.name}",
                        control=spec.control,
                        requested=describe(requested),
                        allowed=allowed,
                        reason=f"locked by the organisation policy ({binding.locked_by}): "
                        f"{spec.name} may not be looser than {allowed!r}",
                    )
                )
        self._sources[spec.control] |= sources
        return value

    def settings(self) -> MeetingSettings:
        # Keyword arguments are evaluated in order, so violations follow the field order.
        return MeetingSettings(
            passcode_required=self.field(_PASSCODE_REQUIRED),
            passcode_min_length=self.field(_PASSCODE_MIN_LENGTH),
            waiting_room=self.field(_WAITING_ROOM),
            sign_in_required=self.field(_SIGN_IN_REQUIRED),
            sign_in_domains=self._sign_in_domains(),
            join_before_host=self.field(_JOIN_BEFORE_HOST),
            presenters=self.field(_PRESENTERS_FIELD),
            chat=self.field(_CHAT_FIELD),
            mute_on_entry=self.field(_MUTE_ON_ENTRY),
            per_invitee_links=self.field(_PER_INVITEE_LINKS),
            invitee_domains=_sorted(self.field(_INVITEE_DOMAINS)),
            max_duration_minutes=self.field(_MAX_DURATION),
        )

    def _sign_in_domains(self) -> tuple[str, ...]:
        domains = self.field(_SIGN_IN_DOMAINS)
        if domains == frozenset():
            # The user's groups share no sign-in domain; an empty tuple would mean "any".
            names = [n for n, g in self._groups if not isinstance(_group_sign_in(g), _Unset)]
            reason = f"groups {', '.join(names)} allow no common sign-in domain"
            raise InvalidPolicy(
                source="groups", errors=[FieldError("sign_in_required.allowed_domains", reason)]
            )
        return _sorted(domains) or ()

    def allow_duration(self, settings: MeetingSettings, minutes: int) -> MeetingSettings:
        """Refuse a duration over a locked maximum; an unlocked one stretches to fit."""
        maximum = settings.max_duration_minutes
        if minutes <= maximum:
            return settings
        binding = self._bindings[Control.MAX_DURATION]
        if not binding.locked:
            self._sources[Control.MAX_DURATION] = {"request"}
            return replace(settings, max_duration_minutes=minutes)
        self.violations.append(
            Violation(
                field="duration_minutes",
                control=Control.MAX_DURATION,
                requested=str(minutes),
                allowed=str(maximum),
                reason=f"locked by the organisation policy ({binding.locked_by}): "
                f"meetings may last at most {maximum} minutes",
            )
        )
        return settings

    def check_invitees(self, settings: MeetingSettings, emails: Sequence[str]) -> None:
        """Refuse each invitee whose email domain the effective policy does not allow."""
        if isinstance(emails, str):
            raise TypeError("invitee_emails must be a sequence of addresses, not one string")
        allowed = settings.invitee_domains
        if allowed is None:
            return
        for index, email in enumerate(emails):
            domain = _email_domain(email)
            if domain in allowed:
                continue
            self.violations.append(
                Violation(
                    field=f"invitees[{index}].email",
                    control=Control.INVITEE_DOMAINS,
                    requested=domain or "(no domain)",
                    allowed=describe(allowed),
                    reason="the organisation policy allows invitees only from: "
                    + describe(allowed),
                )
            )

    def policy(self, settings: MeetingSettings) -> EffectivePolicy:
        bindings = self._bindings.items()
        return EffectivePolicy(
            settings=settings,
            locked=frozenset(control for control, binding in bindings if binding.locked),
            must_enforce=frozenset(
                control
                for control, binding in bindings
                if binding.enforcement is Enforcement.REQUIRED
            ),
            sources={control: _source(tokens) for control, tokens in self._sources.items()},
        )


def _sorted(domains: Domains) -> tuple[str, ...] | None:
    return None if domains is None else tuple(sorted(domains))


def _email_domain(email: str) -> str:
    """The address's domain as the policy spells domains: lower-case ASCII (punycode)."""
    if "@" not in email:
        return ""
    domain = email.rpartition("@")[2].lower()
    try:
        # email-validator hands back internationalised domains in Unicode form.
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain  # matches no ASCII policy domain, so the invitee is refused


def _source(tokens: set[str]) -> str:
    """One label per control: the latest layer that decided any of its fields."""
    if "request" in tokens:
        return "request"
    groups = sorted(token for token in tokens if token.startswith("group:"))
    return "+".join(groups) if groups else "defaults"


def effective_for_groups(document: PolicyDocument, groups: Sequence[str]) -> EffectivePolicy:
    """The policy a member of `groups` starts from, before any request.

    Raises:
        InvalidPolicy: the user's groups allow no common sign-in domain.
    """
    resolver = _Resolver(document, groups, request=None)
    return resolver.policy(resolver.settings())


def resolve_policy(
    document: PolicyDocument,
    *,
    groups: Sequence[str],
    request: SettingsRequest | None,
    duration_minutes: int,
    invitee_emails: Sequence[str],
) -> EffectivePolicy:
    """Resolve the settings one meeting gets, or refuse the request.

    Args:
        document: the loaded policy.
        groups: the requester's groups claim; groups the policy does not name are ignored.
        request: the settings the requester asked for, if any.
        duration_minutes: the meeting's planned length.
        invitee_emails: the invitees' addresses, in request order (violations cite the index).

    Returns:
        The effective settings with, per control, its lock, enforcement and source.

    Raises:
        PolicyViolation: one or more settings, the duration or invitees break the policy;
            every violation is listed.
        InvalidPolicy: the user's groups allow no common sign-in domain.
    """
    resolver = _Resolver(document, groups, request)
    settings = resolver.allow_duration(resolver.settings(), duration_minutes)
    resolver.check_invitees(settings, invitee_emails)
    if resolver.violations:
        raise PolicyViolation(resolver.violations)
    return resolver.policy(settings)
