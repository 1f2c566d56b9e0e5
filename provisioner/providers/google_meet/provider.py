"""Google Meet (a Calendar event with a Meet conference) as a `MeetingProvider`.

Creating a meeting: insert a Calendar event on the host's calendar (acting as the host
through domain-wide delegation) whose id we derive from our meeting id, with a
`conferenceData.createRequest` whose requestId is derived the same way. A retry after a
timeout or a 500 gets 409 for the id and adopts the event, so there is never a second
one. `sendUpdates=none` and no attendees: Google mails nobody; we deliver privately.
Calendar names the conference by its meeting code; Meet accepts the code as an alias to
read the space, whose real name we then use to PATCH its config. A create whose config
cannot be applied deletes the event again.

What each control maps to, and therefore what `capabilities` claims:

    control            enforced  Meet space config
    -----------------  --------  ------------------------------------------------------
    waiting_room       yes       accessType RESTRICTED and no guests on the event: only
                                 invitees join without knocking, and there are none, so
                                 everyone but the host asks to join and waits
    sign_in_required   yes       accessType TRUSTED (RESTRICTED when the space has dial-in,
                                 since TRUSTED lets phone callers straight in): people
                                 outside the host's organisation, anonymous ones included,
                                 must knock and be admitted. Refusing anonymous users
                                 outright is a Workspace admin setting (see the docs)
    presenters         yes       moderation ON + presentRestriction HOSTS_ONLY
    chat               partly    moderation ON + chatRestriction HOSTS_ONLY: claimed for
                                 "host_only"; for "off" it is applied but not claimed,
                                 since Meet cannot switch chat off for the host
    passcode           no        Meet has no passcodes
    join_before_host   no        no per-meeting setting; RESTRICTED makes people knock,
                                 but Meet does not promise to hold them until the host
    mute_on_entry      no        no API setting
    per_invitee_links  no        one meeting link for everyone
    invitee_domains    no        a shared link works for whoever holds it
    max_duration       no        Meet does not end a call at the event's end

Deleting the event does not delete the space (Meet has no such call) and the link would
keep working, so `delete` first sets the space to RESTRICTED: whoever still has the link
must knock and be admitted by the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import structlog

from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import (
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
from provisioner.providers.google_meet.client import (
    PROVIDER_NAME,
    GoogleClient,
    JsonObject,
)
from provisioner.providers.google_meet.config import GoogleMeetConfig
from provisioner.providers.google_meet.mapping import (
    LOCKDOWN_MASK,
    SPACE_MASK,
    conference_status,
    derived_id,
    event_insert_body,
    event_times,
    has_dial_in,
    meeting_code,
    observe,
    participant,
    requested,
    section,
    space_config,
    space_id,
)

log = structlog.get_logger(__name__)

_POLL_SECONDS = 0.5


class GoogleMeetProvider:
    """Google Meet meetings made through Calendar and configured through the Meet API."""

    name: str = PROVIDER_NAME
    config_model: ClassVar[type[GoogleMeetConfig]] = GoogleMeetConfig
    capabilities: frozenset[Control] = frozenset(
        {Control.WAITING_ROOM, Control.SIGN_IN_REQUIRED, Control.PRESENTERS, Control.CHAT}
    )
    features: frozenset[Feature] = frozenset(
        {Feature.RESCHEDULE, Feature.END_FOR_ALL, Feature.PARTICIPANTS, Feature.LOCK}
    )

    def __init__(
        self,
        config: GoogleMeetConfig,
        *,
        client: GoogleClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._client = client or GoogleClient(config, transport=transport)

    @classmethod
    def from_config(cls, config: GoogleMeetConfig) -> GoogleMeetProvider:
        """Build the provider from its validated settings (used by the registry)."""
        return cls(config)

    @property
    def client(self) -> GoogleClient:
        return self._client

    def _user(self, spec: MeetingSpec) -> str:
        return self._config.delegated_user or spec.host.email.strip().lower()

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        """Insert (or, on a retry, adopt) the event, wait for its space, configure it.

        Raises:
            ProviderRejected: the schedule is impossible, Google refused a value, or
                Calendar could not create the conference.
            ProviderAuthFailed: delegation or scopes are missing.
            ProviderRetriable: Google stayed unavailable through every retry.
        """
        _check_schedule(spec)
        user = self._user(spec)
        calendar = self._config.calendar_id
        event_id = derived_id(spec.meeting_id, "event")
        reference = {"user": user, "calendar_id": calendar, "event_id": event_id}
        event = await self._client.insert_event(user, calendar, event_insert_body(spec))
        if event.get("status") == "cancelled":
            raise ProviderRejected(
                "an event with this meeting's id was already cancelled",
                provider=PROVIDER_NAME,
                field="meeting_id",
            )
        try:
            space = await self._configure(user, await self._conference(user, event), spec.settings)
            return self._provisioned(spec, space, reference)
        except Exception:
            await self._discard(MeetingRef(event_id, reference))
            raise

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        """Read the event and its space back and compare every control Meet applies."""
        user, calendar, event_id = self._where(created.ref)
        event = await self._client.get_event(user, calendar, event_id)
        code = meeting_code(event)
        if event.get("status") == "cancelled" or code is None:
            raise ProviderNotFound(
                f"{PROVIDER_NAME}: the event or its conference is gone", provider=PROVIDER_NAME
            )
        space = await self._client.get_space(user, code)
        observed = observe(spec.settings, event, space)
        if space.get("meetingUri") == created.host.url:
            return observed
        mismatched = dict(observed.mismatched)
        for control in requested(spec.settings):
            mismatched.setdefault(control, "the event points at a different space")
        return ObservedSettings(confirmed=frozenset(), mismatched=mismatched)

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        """Move or rename the event; the conference, and so the link, stays the same."""
        _check_schedule(spec)
        user, calendar, event_id = self._where(meeting)
        event = await self._client.patch_event(user, calendar, event_id, event_times(spec))
        code = meeting_code(event)
        if code is None:
            raise ProviderNotFound(
                f"{PROVIDER_NAME}: the event has no Meet conference", provider=PROVIDER_NAME
            )
        space = await self._configure(user, code, spec.settings)
        return self._provisioned(spec, space, dict(meeting.reference))

    async def delete(self, meeting: MeetingRef) -> None:
        """Lock the space down, then delete the event (quietly); one already gone is fine."""
        user, calendar, event_id = self._where(meeting)
        try:
            event = await self._client.get_event(user, calendar, event_id)
        except ProviderNotFound:
            return
        code = meeting_code(event)
        if code is not None:
            try:
                space = await self._client.get_space(user, code)
                await self._client.patch_space(
                    user, space_id(space), {"config": {"accessType": "RESTRICTED"}}, LOCKDOWN_MASK
                )
            except (ProviderNotFound, ProviderAuthFailed, ProviderRejected) as error:
                log.warning(
                    "provider.lockdown_failed",
                    provider=PROVIDER_NAME,
                    error_type=type(error).__name__,
                )
        await self._client.delete_event(user, calendar, event_id)

    async def end(self, meeting: MeetingRef) -> None:
        """End the space's running conference for everyone; nothing running is fine."""
        user, calendar, event_id = self._where(meeting)
        space = await self._space_for(user, calendar, event_id)
        if section(space, "activeConference"):
            await self._client.end_active_conference(user, space_id(space))

    async def list_participants(self, meeting: MeetingRef) -> Sequence[Participant]:
        """Everyone Meet recorded in the space's conferences (live and past).

        Meet names signed-in users by their account id, not their address, so `email` is
        None and only names can be compared with the invite list.
        """
        user, calendar, event_id = self._where(meeting)
        space = await self._space_for(user, calendar, event_id)
        found: list[Participant] = []
        for record in await self._client.conference_records(user, f"spaces/{space_id(space)}"):
            name = record.get("name")
            if not isinstance(name, str) or not name.startswith("conferenceRecords/"):
                continue
            for person in await self._client.participants(user, name.split("/", 1)[1]):
                found.append(participant(person))
        return found

    async def lock(self, meeting: MeetingRef) -> None:
        """Set the space to RESTRICTED: from now on only people invited through Calendar
        join without knocking, and the host decides on everyone else. Meet's REST API has
        no call that removes a participant (participants are read-only), so EXPEL is not
        offered; the host removes people in the Meet window."""
        user, calendar, event_id = self._where(meeting)
        space = await self._space_for(user, calendar, event_id)
        updated = await self._client.patch_space(
            user, space_id(space), {"config": {"accessType": "RESTRICTED"}}, LOCKDOWN_MASK
        )
        if section(updated, "config").get("accessType") != "RESTRICTED":
            raise ProviderRejected(
                f"{PROVIDER_NAME}: the space did not become RESTRICTED",
                provider=PROVIDER_NAME,
                field="config.accessType",
            )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _where(self, meeting: MeetingRef) -> tuple[str, str, str]:
        user = meeting.reference.get("user")
        calendar = meeting.reference.get("calendar_id") or self._config.calendar_id
        if not user:
            raise ProviderRejected(
                "the meeting reference has no user", provider=PROVIDER_NAME, field="reference"
            )
        return user, calendar, meeting.reference.get("event_id") or meeting.provider_meeting_id

    async def _space_for(self, user: str, calendar: str, event_id: str) -> JsonObject:
        code = meeting_code(await self._client.get_event(user, calendar, event_id))
        if code is None:
            raise ProviderNotFound(
                f"{PROVIDER_NAME}: the event has no Meet conference", provider=PROVIDER_NAME
            )
        return await self._client.get_space(user, code)

    async def _conference(self, user: str, event: JsonObject) -> str:
        """The meeting code, once Calendar has finished creating the conference."""
        polls = max(1, int(self._config.conference_wait_seconds / _POLL_SECONDS))
        for _ in range(polls):
            status = conference_status(event)
            code = meeting_code(event)
            if code is not None and status in (None, "success"):
                return code
            if status == "failure":
                break
            await self._client.sleep(_POLL_SECONDS)
            event = await self._client.get_event(
                user, self._config.calendar_id, str(event.get("id"))
            )
        raise ProviderRejected(
            f"{PROVIDER_NAME}: Calendar did not create the Meet "
            "conference (is Meet enabled for this user?)",
            provider=PROVIDER_NAME,
            field="conferenceData",
        )

    async def _configure(self, user: str, code: str, settings: MeetingSettings) -> JsonObject:
        space = await self._client.get_space(user, code)
        return await self._client.patch_space(
            user,
            space_id(space),
            {"config": space_config(settings, dial_in=has_dial_in(space))},
            SPACE_MASK,
        )

    async def _discard(self, meeting: MeetingRef) -> None:
        try:
            await self.delete(meeting)
        except ProviderError as error:
            log.warning(
                "provider.cleanup_failed", provider=PROVIDER_NAME, error_type=type(error).__name__
            )

    def _provisioned(
        self, spec: MeetingSpec, space: Mapping[str, Any], reference: Mapping[str, str]
    ) -> ProvisionedMeeting:
        uri = space.get("meetingUri")
        if not isinstance(uri, str) or not uri.startswith("https://"):
            raise ProviderError(
                f"{PROVIDER_NAME}: the space has no meeting link", provider=PROVIDER_NAME
            )
        join = JoinDetails(url=uri)
        return ProvisionedMeeting(
            provider_meeting_id=reference["event_id"],
            host=join,
            shared=join,
            personal={},
            enforced=requested(spec.settings) & self.capabilities,
            reference=dict(reference),
        )


def _check_schedule(spec: MeetingSpec) -> None:
    if spec.start.tzinfo is None or spec.start.utcoffset() is None:
        raise ProviderRejected(
            "start must be timezone-aware", provider=PROVIDER_NAME, field="start"
        )
    if spec.duration <= timedelta(0):
        raise ProviderRejected(
            "duration must be positive", provider=PROVIDER_NAME, field="duration"
        )
