"""Jitsi Meet as a `MeetingProvider`: one signed join token per person, no API calls.

A Jitsi "meeting" has no server-side record to create: the room comes into being when the
first person joins, and Prosody (or 8x8 JaaS) admits whoever presents a token signed with
the deployment's key for that room. So `create` picks an unguessable room name and mints
one token per person, `verify` re-checks those tokens, and `delete` has nothing to remove.

What the server enforces, and therefore what `capabilities` claims:

    control               enforced  how, or why not
    --------------------  --------  -------------------------------------------------------
    sign_in_required      yes       Prosody refuses anyone without a valid token -- provided
                                    the server runs token auth with `allow_empty_token =
                                    false` and no anonymous guest domain. Each token names
                                    one invitee, but it is a bearer credential: a forwarded
                                    link works for whoever holds it until `exp`.
    per_invitee_links     yes       every invitee gets their own token (own `context.user`).
    invitee_domains       yes       only invitees get tokens, and `create` refuses to mint
                                    one outside the allowed domains.
    max_duration_minutes  yes       a token stops admitting people at `exp` = scheduled end
                                    + `join_grace_minutes`; the server does not end a call
                                    that is already running.
    passcode              no        no JWT claim sets a room password. When policy asks, we
                                    generate one with `secrets` and deliver it to the host
                                    and every invitee; the host can set it as the room
                                    password or lobby bypass, but the server does not
                                    require it.
    waiting_room          no        a moderator switches the lobby on in the meeting; no
                                    token claim does.
    join_before_host      no        every invitee's token opens the room; only the host gets
                                    moderator rights, but nothing makes the others wait.
    presenters            no        stock Jitsi does not limit screen sharing by token.
    chat                  no        no token claim or room setting we can set ahead of time.
    mute_on_entry         no        a client setting (`startWithAudioMuted`) that the
                                    invitee controls.

Only the host's token carries moderator rights (`context.user.moderator`, `affiliation:
owner`, and JaaS `features`). Whether a self-hosted Prosody honours them depends on its
plugins (e.g. `token_affiliation`); without one, Jitsi makes the first person in the room
moderator -- another reason join-before-host is not claimed.

In-meeting controls: stock Jitsi Meet has no documented HTTP API to remove a participant,
lock a room or list who is in it (Jitsi's `mod_muc_kick_participant` Prosody module only
hangs up SIP gateway callers; other kick or room-stats endpoints are third-party plugins).
So EXPEL, LOCK, PARTICIPANTS and END_FOR_ALL are not offered: the moderator (the host)
kicks people, turns the lobby on or sets a room password in the meeting window, and the
service says so rather than calling an API that a stock deployment lacks. Nor can the
compliance scan list Jitsi rooms: they exist only while someone is in them.

Rooms are derived from the idempotency key and meeting id (see `tokens.py`), so a retried
create lands in the same room and never makes a second meeting. Rotating a leaked link
means a new create with a new idempotency key: a new room, and new tokens for everyone.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import (
    Feature,
    JoinDetails,
    MeetingRef,
    MeetingSpec,
    ObservedSettings,
    Participant,
    Person,
    ProvisionedMeeting,
)
from provisioner.providers.errors import ProviderRejected, ProviderUnsupported
from provisioner.providers.jitsi import tokens
from provisioner.providers.jitsi.config import JitsiConfig

PROVIDER_NAME = "jitsi"

# No 0/O/o, 1/I/l/i: the passcode is read from an email and typed into a dialog.
PASSCODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz"
MIN_PASSCODE_LENGTH = 10


def generate_passcode(min_length: int) -> str:
    """A room password from `secrets`, at least `MIN_PASSCODE_LENGTH` characters."""
    length = max(min_length, MIN_PASSCODE_LENGTH)
    return "".join(secrets.choice(PASSCODE_ALPHABET) for _ in range(length))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _domain(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()


def _allowed(email: str, domains: Iterable[str]) -> bool:
    """Exact, case-insensitive domain match (a subdomain is a different organisation)."""
    return _domain(email) in {domain.strip().lower().lstrip("@") for domain in domains}


@dataclass(frozen=True)
class _Link:
    """One join link to check in `verify`: who it is for and what it must grant."""

    role: str  # "host" or "invitee", used in non-secret descriptions
    person: Person
    join: JoinDetails
    moderator: bool


class JitsiProvider:
    """Self-hosted Jitsi Meet (Prosody token auth) or 8x8 JaaS; see the module docstring.

    Args:
        config: the validated `[providers.jitsi]` settings.
        clock: returns the current time (timezone-aware); injectable for tests.

    Raises:
        ValueError: the signing key cannot be loaded (the message names the setting).
    """

    # Plain attributes, not ClassVar: the protocol declares them as instance members.
    name: str = PROVIDER_NAME
    config_model: ClassVar[type[JitsiConfig]] = JitsiConfig
    capabilities: frozenset[Control] = frozenset(
        {
            Control.SIGN_IN_REQUIRED,
            Control.PER_INVITEE_LINKS,
            Control.INVITEE_DOMAINS,
            Control.MAX_DURATION,
        }
    )
    # Rescheduling re-mints tokens for the same room. Ending a call or listing who is in it
    # needs server modules (end-meeting, room metadata) that stock Jitsi lacks.
    features: frozenset[Feature] = frozenset({Feature.RESCHEDULE})

    def __init__(self, config: JitsiConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        self._config = config
        self._keys = tokens.load_keys(config)
        self._clock = clock or _utc_now

    @classmethod
    def from_config(cls, config: JitsiConfig) -> JitsiProvider:
        """Build the provider from its validated settings (used by the registry)."""
        return cls(config)

    @property
    def config(self) -> JitsiConfig:
        return self._config

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        """Pick the room for this create and mint a token for the host and each invitee.

        No network call is made. A retry with the same `idempotency_key` and
        `spec.meeting_id` returns the same room (with freshly minted tokens, which is
        harmless: the earlier ones were never delivered and expire at `exp`).

        Raises:
            ProviderRejected: `start` is naive, the meeting is over (or too long for
                `max_duration_minutes`), or a participant's address is outside the
                domains the settings allow; `field` names the part of the spec.
        """
        room = tokens.room_name(
            self._keys,
            prefix=self._config.room_prefix,
            idempotency_key=idempotency_key,
            meeting_id=spec.meeting_id,
        )
        return self._mint(spec, room)

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        """Reschedule: the same room, new tokens whose window matches the new times.

        The old tokens cannot be revoked and stay valid until their own `exp`; the service
        re-delivers the new links with a higher SEQUENCE so calendars replace the old ones.
        """
        return self._mint(spec, meeting.provider_meeting_id)

    def _mint(self, spec: MeetingSpec, room: str) -> ProvisionedMeeting:
        now = self._clock()
        self._check_schedule(spec, now)
        self._check_people(spec)
        window = self._window(spec, issued_at=now)
        passcode = (
            generate_passcode(spec.settings.passcode_min_length)
            if spec.settings.passcode_required
            else None
        )
        host = JoinDetails(
            url=self._join_url(room, spec.host, moderator=True, window=window),
            passcode=passcode,
        )
        personal: dict[str, JoinDetails] = {}
        for invitee in spec.invitees:
            email = invitee.email.strip().lower()
            if email in personal:
                continue  # one link per address, however often it was listed
            personal[email] = JoinDetails(
                url=self._join_url(room, invitee, moderator=False, window=window),
                passcode=passcode,
            )
        return ProvisionedMeeting(
            provider_meeting_id=room,
            host=host,
            shared=None,
            personal=personal,
            enforced=self._requested(spec.settings),
            reference={
                "room": room,
                "base_url": self._config.join_base,
                "profile": self._config.profile,
            },
        )

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        """Decode every minted token with our key and compare it with `spec`.

        Jitsi has nothing to read back, so this proves what the server will be shown: each
        link targets the room, each token verifies for this deployment, its validity window
        matches the schedule, only the host's token has moderator rights, and every invitee
        has exactly one distinct token. Descriptions name counts and roles, never tokens,
        URLs or addresses.
        """
        problems: Counter[tuple[Control, str]] = Counter()
        room = created.provider_meeting_id
        if created.reference.get("room") != room:
            problems[Control.PER_INVITEE_LINKS, "the recorded room differs from the meeting"] += 1
        if created.shared is not None:
            problems[Control.PER_INVITEE_LINKS, "a shared link exists"] += 1

        links = [_Link("host", spec.host, created.host, moderator=True)]
        invited: dict[str, Person] = {}
        for person in spec.invitees:
            invited.setdefault(person.email.strip().lower(), person)
        for email, person in invited.items():
            join = created.personal.get(email)
            if join is None:
                problems[Control.PER_INVITEE_LINKS, "invitee without a personal link"] += 1
            else:
                links.append(_Link("invitee", person, join, moderator=False))
        uninvited = len(created.personal.keys() - invited.keys())
        if uninvited:
            problems[Control.PER_INVITEE_LINKS, "link for someone not invited"] += uninvited

        window = self._window(spec, issued_at=self._clock())
        seen: set[str] = set()
        for link in links:
            token = self._token_from(link.join.url, room)
            if token is None:
                problems[Control.PER_INVITEE_LINKS, f"{link.role} link is not for this room"] += 1
                continue
            if token in seen:
                problems[Control.PER_INVITEE_LINKS, "links share one token"] += 1
            seen.add(token)
            for control, description in self._check_token(spec, link, token, room, window):
                problems[control, description] += 1

        mismatched: dict[Control, str] = {}
        for (control, description), count in problems.items():
            text = f"{description} (x{count})" if count > 1 else description
            previous = mismatched.get(control)
            mismatched[control] = text if previous is None else f"{previous}; {text}"
        return ObservedSettings(
            confirmed=self._requested(spec.settings) - mismatched.keys(),
            mismatched=mismatched,
        )

    async def delete(self, meeting: MeetingRef) -> None:
        """Nothing to delete: Jitsi keeps no meeting record.

        Tokens already minted cannot be revoked; they stop admitting anyone at `exp`
        (scheduled end + `join_grace_minutes`, at most two hours), which is why that grace
        is bounded. Links we never deliver are simply forgotten with the meeting row.
        """
        return None

    async def end(self, meeting: MeetingRef) -> None:
        """Stock Jitsi has no API to end a call for everyone; the host ends it in the room."""
        raise ProviderUnsupported(
            "Jitsi has no API to end a meeting for everyone; the host "
            "can end it from the meeting (moderator: End for all)",
            provider=self.name,
            feature=Feature.END_FOR_ALL,
        )

    async def list_participants(self, meeting: MeetingRef) -> Sequence[Participant]:
        """Stock Jitsi publishes no participant list through an API."""
        raise ProviderUnsupported(
            "Jitsi has no API listing who is in a room",
            provider=self.name,
            feature=Feature.PARTICIPANTS,
        )

    async def aclose(self) -> None:
        """Nothing to release: this provider holds no network client."""
        return None

    def _requested(self, settings: MeetingSettings) -> frozenset[Control]:
        """Our capabilities that these settings actually ask for."""
        asked = {Control.PER_INVITEE_LINKS}  # every invitee always gets their own token
        if settings.sign_in_required:
            asked.add(Control.SIGN_IN_REQUIRED)
        if settings.invitee_domains is not None:
            asked.add(Control.INVITEE_DOMAINS)
        if settings.max_duration_minutes > 0:
            asked.add(Control.MAX_DURATION)
        return frozenset(asked) & self.capabilities

    def _window(self, spec: MeetingSpec, *, issued_at: datetime) -> tokens.TokenWindow:
        early = timedelta(minutes=self._config.early_join_minutes)
        grace = timedelta(minutes=self._config.join_grace_minutes)
        return tokens.TokenWindow(
            issued_at=int(issued_at.timestamp()),
            not_before=int((spec.start - early).timestamp()),
            expires_at=int((spec.end + grace).timestamp()),
        )

    def _reject(self, detail: str, *, field: str) -> ProviderRejected:
        return ProviderRejected(detail, provider=PROVIDER_NAME, field=field)

    def _check_schedule(self, spec: MeetingSpec, now: datetime) -> None:
        if spec.start.tzinfo is None or spec.start.utcoffset() is None:
            raise self._reject("start must be timezone-aware", field="start")
        if spec.duration <= timedelta(0):
            raise self._reject("duration must be positive", field="duration")
        limit = spec.settings.max_duration_minutes
        if limit > 0 and spec.duration > timedelta(minutes=limit):
            raise self._reject(f"duration exceeds max_duration_minutes ({limit})", field="duration")
        if spec.end + timedelta(minutes=self._config.join_grace_minutes) <= now:
            raise self._reject(
                "the meeting is over: its join tokens would already have expired", field="start"
            )

    def _check_people(self, spec: MeetingSpec) -> None:
        """Refuse to mint a token the settings do not allow (this is what "enforced" means)."""
        settings = spec.settings
        for role, people in (("host", (spec.host,)), ("invitees", spec.invitees)):
            for person in people:
                if not _domain(person.email) or "@" not in person.email:
                    raise self._reject(f"{role}: not an email address", field=role)
                if (
                    settings.sign_in_required
                    and settings.sign_in_domains
                    and not _allowed(person.email, settings.sign_in_domains)
                ):
                    raise self._reject(
                        f"{role}: domain {_domain(person.email)} is not in sign_in_domains",
                        field=role,
                    )
        if settings.invitee_domains is not None:
            for person in spec.invitees:
                if not _allowed(person.email, settings.invitee_domains):
                    raise self._reject(
                        f"invitees: domain {_domain(person.email)} is not in invitee_domains",
                        field="invitees",
                    )

    def _join_url(
        self, room: str, person: Person, *, moderator: bool, window: tokens.TokenWindow
    ) -> str:
        claims = tokens.build_claims(
            self._config, room=room, person=person, moderator=moderator, window=window
        )
        token = tokens.mint(self._keys, claims)
        return f"{self._config.join_base}/{room}?{urlencode({'jwt': token})}"

    def _token_from(self, url: str, room: str) -> str | None:
        """The token in `url` if the URL is exactly `{join_base}/{room}?jwt=...`."""
        parts = urlsplit(url)
        if parts.fragment or f"{parts.scheme}://{parts.netloc}{parts.path}" != (
            f"{self._config.join_base}/{room}"
        ):
            return None
        query = parse_qs(parts.query, keep_blank_values=True)
        values = query.get("jwt", [])
        if set(query) != {"jwt"} or len(values) != 1 or not values[0]:
            return None
        return values[0]

    def _check_token(
        self,
        spec: MeetingSpec,
        link: _Link,
        token: str,
        room: str,
        window: tokens.TokenWindow,
    ) -> list[tuple[Control, str]]:
        """What is wrong with one token, as (control, non-secret description) pairs."""
        settings = spec.settings
        who = link.role
        try:
            claims = tokens.decode(self._config, self._keys, token)
        except jwt.InvalidTokenError:
            # The exception text is PyJWT's; keep it out, it is not ours to vet.
            found = [(Control.PER_INVITEE_LINKS, f"{who} token does not verify")]
            if settings.sign_in_required:
                found.append((Control.SIGN_IN_REQUIRED, f"{who} token does not verify"))
            return found

        found = []
        if claims.get("room") != room:
            found.append((Control.PER_INVITEE_LINKS, f"{who} token is for another room"))
        if claims.get("nbf") != window.not_before:
            found.append((Control.MAX_DURATION, f"{who} token validity starts off schedule"))
        if claims.get("exp") != window.expires_at:
            found.append((Control.MAX_DURATION, f"{who} token expiry differs from end + grace"))

        user = _user_claims(claims)
        email = str(user.get("email", "")).lower()
        if email != link.person.email.strip().lower() or user.get("id") != tokens.user_id(email):
            found.append((Control.PER_INVITEE_LINKS, f"{who} token names someone else"))

        moderator = tokens.grants_moderator(claims)
        if link.moderator and not moderator:
            found.append((Control.PER_INVITEE_LINKS, "host token lacks moderator rights"))
        elif moderator and not link.moderator:
            found.append((Control.PER_INVITEE_LINKS, "invitee token grants moderator rights"))

        if (
            settings.sign_in_required
            and settings.sign_in_domains
            and not _allowed(email, settings.sign_in_domains)
        ):
            found.append((Control.SIGN_IN_REQUIRED, f"{who} token outside sign_in_domains"))
        if (
            not link.moderator
            and settings.invitee_domains is not None
            and not _allowed(email, settings.invitee_domains)
        ):
            found.append((Control.INVITEE_DOMAINS, "invitee token outside invitee_domains"))
        return found


def _user_claims(claims: dict[str, Any]) -> dict[str, Any]:
    context = claims.get("context")
    user = context.get("user") if isinstance(context, dict) else None
    return user if isinstance(user, dict) else {}
