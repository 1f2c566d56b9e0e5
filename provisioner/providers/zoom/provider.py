"""Zoom as a `MeetingProvider`: scheduled meetings (type 2, never the PMI) under the policy.

What Zoom enforces, and therefore what `capabilities` claims:

    control            how                                            confirmed by
    -----------------  ---------------------------------------------  ------------------------
    passcode           `password`, 10 characters from `secrets`       GET meeting `password`
                       (Zoom's cap; a policy asking for more than 10
                       is refused, never silently shortened)
    waiting_room       `settings.waiting_room`                        GET meeting
    sign_in_required   `settings.meeting_authentication`; with        GET meeting
                       domains, `authentication_option` (configured)
                       + `authentication_domains`
    join_before_host   `settings.join_before_host`                    GET meeting
    mute_on_entry      `settings.mute_upon_entry`                     GET meeting
    per_invitee_links  registration with manual approval; each        GET registrants
                       invitee added as an auto-approved registrant
                       with their own `join_url`
    presenters         USER level: `in_meeting.who_can_share_screen`  GET user settings
    chat               USER level: `in_meeting.chat`,                 GET user settings
                       `allow_participants_chat_with`

Screen sharing and chat are settings of the host's Zoom user (or account, when an admin
locks them), not of a meeting. Provisioner does not change them -- that would alter every
meeting the host has -- so `create` reads them and lists PRESENTERS/CHAT as enforced only
when they are already at least as strict as the policy; otherwise the service reports them
as not enforced. Not claimed: invitee_domains (Zoom does not restrict who may be a
registrant; sign-in domains restrict who may join) and max_duration (Zoom does not end a
meeting at its scheduled end).

The host's link is the meeting's `join_url`: the host signs in and Zoom recognises them.
`start_url` is not used: it embeds a host token that expires within hours.

In-meeting controls: Zoom's REST API (Meeting API v2, `PATCH /live_meetings/{id}/events`)
controls recording and invitations only. It has no call to remove a participant or to lock
a running meeting, so EXPEL and LOCK are not offered: the host removes someone, or locks
the meeting, from the meeting window's Security menu. Ending for everyone is offered.

The compliance scan (`list_upcoming`, `apply_settings`) reads every active user's upcoming
meetings, whoever created them; see `inventory.py`.

The mapping itself (request bodies out, read-back comparison in) is in `mapping.py`; the
calls, token handling and create-once writes are in `client.py`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import ClassVar

import httpx
import structlog

from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import (
    ExistingMeeting,
    Feature,
    JoinDetails,
    MeetingRef,
    MeetingSpec,
    ObservedSettings,
    Participant,
    ProvisionedMeeting,
)
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
)
from provisioner.providers.overlap import all_of
from provisioner.providers.zoom.client import PROVIDER_NAME, JsonObject, ZoomClient
from provisioner.providers.zoom.config import ZOOM_MAX_PASSCODE, ZoomConfig
from provisioner.providers.zoom.inventory import existing_meeting, fix_body
from provisioner.providers.zoom.mapping import (
    chat_ok,
    compare,
    generate_passcode,
    in_meeting_settings,
    marker,
    meeting_body,
    presenters_ok,
    registrant_body,
    when,
)

log = structlog.get_logger(__name__)


class ZoomProvider:
    """Zoom through a Server-to-Server OAuth app; see the module docstring."""

    name: str = PROVIDER_NAME
    config_model: ClassVar[type[ZoomConfig]] = ZoomConfig
    capabilities: frozenset[Control] = frozenset(
        {
            Control.PASSCODE,
            Control.WAITING_ROOM,
            Control.SIGN_IN_REQUIRED,
            Control.JOIN_BEFORE_HOST,
            Control.MUTE_ON_ENTRY,
            Control.PER_INVITEE_LINKS,
            Control.PRESENTERS,
            Control.CHAT,
        }
    )
    features: frozenset[Feature] = frozenset(
        {Feature.RESCHEDULE, Feature.END_FOR_ALL, Feature.PARTICIPANTS}
    )

    def __init__(
        self,
        config: ZoomConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,  # noqa: S311 (jitter, not secrecy)
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._option = config.authentication_option
        self.client = ZoomClient(config, transport=transport, sleep=sleep, rand=rand, clock=clock)

    @classmethod
    def from_config(cls, config: ZoomConfig) -> ZoomProvider:
        """Build the provider from its validated settings (used by the registry)."""
        return cls(config)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _check(self, spec: MeetingSpec) -> None:
        """Refuse what Zoom cannot do as asked, before anything is created."""
        settings = spec.settings
        if spec.start.tzinfo is None:
            raise ProviderRejected(
                "zoom: start must be timezone-aware", provider=self.name, field="start"
            )
        if spec.duration.total_seconds() <= 0:
            raise ProviderRejected(
                "zoom: duration must be positive", provider=self.name, field="duration"
            )
        if settings.passcode_required and settings.passcode_min_length > ZOOM_MAX_PASSCODE:
            raise ProviderRejected(
                f"zoom caps passcodes at {ZOOM_MAX_PASSCODE} characters; the policy asks for "
                f"at least {settings.passcode_min_length}",
                provider=self.name,
                field="settings.passcode_min_length",
            )
        if (
            settings.sign_in_required
            and settings.sign_in_domains
            and self._config.authentication_option is None
        ):
            raise ProviderRejected(
                "zoom: the policy limits sign-in to domains, which needs the account's "
                "'specified domains' authentication option; set "
                "providers.zoom.authentication_option",
                provider=self.name,
                field="settings.sign_in_domains",
            )

    # -- lifecycle --------------------------------------------------------------------

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        """Create the meeting (once, whatever the retries), its registrants, and report
        what Zoom applied. Raises ProviderRejected before any call for what Zoom cannot
        do as asked (see `_check`). If a step after the meeting exists fails, the meeting
        is deleted before the error is raised: the caller never learns its id, so it
        could not clean it up."""
        self._check(spec)
        settings = spec.settings
        passcode = generate_passcode() if settings.passcode_required else None
        body = meeting_body(spec, passcode=passcode, authentication_option=self._option)
        meeting = await self.client.create_meeting(
            spec.host.email, body, marker=marker(spec.meeting_id)
        )
        meeting_id = int(meeting["id"])
        try:
            personal, in_meeting = await all_of(
                self._register(meeting_id, spec, existing=[])
                if settings.per_invitee_links
                else _nothing_registered(),
                self._host_in_meeting(spec.host.email),
            )
        except BaseException:
            try:
                await self.client.delete_meeting(meeting_id)
            except ProviderError as cleanup:
                log.warning("zoom.orphan_cleanup_failed", error_type=type(cleanup).__name__)
            raise
        return self._provisioned(spec, meeting, personal, in_meeting)

    async def _host_in_meeting(self, host_email: str) -> JsonObject | None:
        """The host's `in_meeting` settings, or None when the app may not read them (the
        user-level controls are then neither claimed nor confirmed)."""
        try:
            return in_meeting_settings(await self.client.user_settings(host_email))
        except (ProviderAuthFailed, ProviderRejected, ProviderNotFound) as error:
            log.warning("zoom.host_settings_unreadable", error_type=type(error).__name__)
            return None

    async def _register(
        self, meeting_id: int, spec: MeetingSpec, existing: Sequence[JsonObject]
    ) -> dict[str, JoinDetails]:
        """Make every invitee an approved registrant; returns their personal links."""
        by_email = {str(r.get("email", "")).lower(): r for r in existing}
        for person in spec.invitees:
            email = person.email.strip().lower()
            if email not in by_email:
                by_email[email] = await self.client.add_registrant(
                    meeting_id, registrant_body(person.email.strip(), person.name)
                )
        return {
            email: JoinDetails(url=str(r["join_url"]))
            for email, r in by_email.items()
            if email in {p.email.strip().lower() for p in spec.invitees}
        }

    def _provisioned(
        self,
        spec: MeetingSpec,
        meeting: JsonObject,
        personal: dict[str, JoinDetails],
        in_meeting: JsonObject | None,
    ) -> ProvisionedMeeting:
        settings = spec.settings
        passcode = meeting.get("password") or None
        personal = {
            email: JoinDetails(url=join.url, passcode=passcode) for email, join in personal.items()
        }
        enforced = {
            Control.WAITING_ROOM,
            Control.JOIN_BEFORE_HOST,
            Control.MUTE_ON_ENTRY,
            Control.SIGN_IN_REQUIRED,
            Control.PER_INVITEE_LINKS,
        }
        if settings.passcode_required:
            enforced.add(Control.PASSCODE)
        if presenters_ok(settings.presenters, in_meeting):
            enforced.add(Control.PRESENTERS)
        if chat_ok(settings.chat, in_meeting):
            enforced.add(Control.CHAT)
        reference = {"host_email": spec.host.email}
        if isinstance(meeting.get("uuid"), str):
            reference["uuid"] = meeting["uuid"]
        host = JoinDetails(url=str(meeting["join_url"]), passcode=passcode)
        return ProvisionedMeeting(
            provider_meeting_id=str(meeting["id"]),
            host=host,
            shared=None if settings.per_invitee_links else host,
            personal=personal,
            enforced=frozenset(enforced),
            reference=reference,
        )

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        """Read the meeting, the host's settings and the registrants back; compare."""
        meeting_id = int(created.provider_meeting_id)
        meeting, in_meeting, registrants = await all_of(  # three independent reads
            self.client.get_meeting(meeting_id),
            self._host_in_meeting(spec.host.email),
            self.client.registrants(meeting_id)
            if spec.settings.per_invitee_links
            else _no_registrants(),
        )
        found = compare(
            spec, created, meeting, in_meeting, registrants, authentication_option=self._option
        )
        return ObservedSettings(confirmed=self.capabilities - set(found), mismatched=found)

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        """Reschedule in place: same id, passcode and links; settings re-applied; new
        invitees registered."""
        self._check(spec)
        meeting_id = int(meeting.provider_meeting_id)
        body = meeting_body(spec, passcode=None, authentication_option=self._option)
        del body["type"]
        await self.client.update_meeting(meeting_id, body)
        current = await self.client.get_meeting(meeting_id)
        personal: dict[str, JoinDetails] = {}
        if spec.settings.per_invitee_links:
            existing = await self.client.registrants(meeting_id)
            personal = await self._register(meeting_id, spec, existing=existing)
        in_meeting = await self._host_in_meeting(spec.host.email)
        return self._provisioned(spec, current, personal, in_meeting)

    async def revoke_invitees(self, meeting: MeetingRef, emails: Sequence[str]) -> None:
        """Cancel the registrations of people taken off the meeting: their links die."""
        if emails:
            await self.client.cancel_registrants(
                int(meeting.provider_meeting_id), [e.strip().lower() for e in emails]
            )

    async def delete(self, meeting: MeetingRef) -> None:
        await self.client.delete_meeting(int(meeting.provider_meeting_id))

    async def end(self, meeting: MeetingRef) -> None:
        await self.client.end_meeting(int(meeting.provider_meeting_id))

    async def list_participants(self, meeting: MeetingRef) -> Sequence[Participant]:
        """Live participants (Dashboard metrics; needs a Business plan or higher)."""
        people = await self.client.live_participants(int(meeting.provider_meeting_id))
        return [
            Participant(
                name=str(p.get("user_name") or ""),
                email=str(p["email"]).lower() if p.get("email") else None,
                joined_at=when(p.get("join_time")),
                left_at=when(p.get("leave_time")),
                provider_participant_id=str(p["id"]) if p.get("id") else None,
            )
            for p in people
        ]

    async def find_created(
        self,
        meeting_id: str,
        *,
        host_email: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> MeetingRef | None:
        """The Zoom meeting a create for our `meeting_id` left behind, if any (for
        reconciling a crash between create and commit). The marker is searched among the
        host's meetings, so the times are not needed."""
        found = await self.client.find_meeting(host_email, marker(meeting_id))
        if found is None:
            return None
        return MeetingRef(str(found["id"]), {"host_email": host_email})

    # -- compliance scan --------------------------------------------------------------

    async def list_upcoming(
        self, *, hosts: Sequence[str], until: datetime
    ) -> Sequence[ExistingMeeting]:
        """Each host's upcoming meetings (every active user's when `hosts` is empty), read
        one by one for their settings. Meetings starting after `until` are skipped; a
        recurring meeting with no fixed time is kept."""
        emails = list(hosts) or [
            str(u["email"]) for u in await self.client.active_users() if u.get("email")
        ]
        found: list[ExistingMeeting] = []
        for email in dict.fromkeys(e.strip().lower() for e in emails):
            for summary in await self.client.upcoming_meetings(email):
                start = when(summary.get("start_time"))
                if start is not None and start > until:
                    continue
                try:
                    detail = await self.client.get_meeting(int(summary["id"]))
                except ProviderNotFound:
                    continue  # deleted between the listing and the read
                found.append(existing_meeting(summary, detail, email))
        return found

    async def apply_settings(
        self, meeting: ExistingMeeting, settings: MeetingSettings
    ) -> frozenset[Control]:
        """PATCH the weaker settings to the policy's; the meeting keeps its id and link.
        A personal meeting ID cannot be changed here (the host reschedules it)."""
        body, changed = fix_body(meeting, settings, authentication_option=self._option)
        if body:
            await self.client.update_meeting(int(meeting.provider_meeting_id), body)
        return changed


async def _nothing_registered() -> dict[str, JoinDetails]:
    """What `_register` gives when the meeting has no per-invitee links."""
    return {}


async def _no_registrants() -> list[JsonObject]:
    """The registrants a meeting without per-invitee links has."""
    return []
