"""The provider-neutral meeting settings that a policy resolves to.

Every provider maps these onto its own API; every control has a name in `Control` so that
locks, violations, capabilities and "not enforced" reports all speak the same language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Control(StrEnum):
    """A security control the policy can set and lock."""

    PASSCODE = "passcode"
    WAITING_ROOM = "waiting_room"
    SIGN_IN_REQUIRED = "sign_in_required"
    JOIN_BEFORE_HOST = "join_before_host"
    PRESENTERS = "presenters"
    CHAT = "chat"
    MUTE_ON_ENTRY = "mute_on_entry"
    PER_INVITEE_LINKS = "per_invitee_links"
    INVITEE_DOMAINS = "invitee_domains"
    MAX_DURATION = "max_duration_minutes"


class Presenters(StrEnum):
    """Who may share their screen; ordered strictest first."""

    HOST_ONLY = "host_only"
    EVERYONE = "everyone"


class Chat(StrEnum):
    """Who may use in-meeting chat; ordered strictest first."""

    OFF = "off"
    HOST_ONLY = "host_only"
    EVERYONE = "everyone"


@dataclass(frozen=True)
class MeetingSettings:
    """Effective settings for one meeting, after defaults, group overrides and the request.

    `invitee_domains` is `None` when any domain may be invited; an empty
    `sign_in_domains` means any signed-in account is accepted.
    """

    passcode_required: bool
    passcode_min_length: int
    waiting_room: bool
    sign_in_required: bool
    sign_in_domains: tuple[str, ...]
    join_before_host: bool
    presenters: Presenters
    chat: Chat
    mute_on_entry: bool
    per_invitee_links: bool
    invitee_domains: tuple[str, ...] | None
    max_duration_minutes: int


@dataclass(frozen=True)
class EffectivePolicy:
    """What applies to one requester: the settings plus, per control, lock and origin.

    `must_enforce` lists controls the policy marks `enforcement: required`: a provider that
    cannot enforce one of them is refused rather than reported as "not enforced".
    `sources` says which layer decided each control (`defaults`, `group:<name>`, `request`),
    so a refusal or the CLI can explain itself.
    """

    settings: MeetingSettings
    locked: frozenset[Control]
    must_enforce: frozenset[Control]
    sources: dict[Control, str] = field(default_factory=dict)
