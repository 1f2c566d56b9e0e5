"""Microsoft Teams (through Microsoft Graph) as a `MeetingProvider`.

Creating a meeting takes two calls. `createOrGet` with our meeting id as `externalId`
makes the meeting, or returns the one a previous attempt made -- so a retry after a crash,
a timeout or a 500 never makes a second one. That action only takes subject, times,
participants and chat info, so the meeting options follow in a PATCH; a create whose PATCH
fails deletes the meeting again rather than leaving one with the tenant's defaults.
With `use_calendar_event` an Outlook event with `isOnlineMeeting` is created instead (a
retry is deduplicated by its `transactionId`) and its meeting is found by join URL.

What each control maps to, and therefore what `capabilities` claims:

    control            enforced  Graph onlineMeeting property
    -----------------  --------  ------------------------------------------------------
    passcode           yes       joinMeetingIdSettings.isPasscodeRequired = true; Teams
                                 generates the passcode, which we read back
    waiting_room       yes       lobbyBypassSettings.scope = "organizer" (everyone else
                                 waits in the lobby), isDialInBypassEnabled = false
    join_before_host   yes       the same: only the organizer can admit from the lobby
    sign_in_required   yes       lobby scope "organizer" or "organization": nobody who is
                                 not signed in to the tenant gets in without being
                                 admitted. Refusing anonymous users outright is the tenant
                                 meeting policy (see docs/providers/teams.md).
    presenters         yes       allowedPresenters = "organizer"
    chat               yes       allowMeetingChat = "disabled" for both "off" and
                                 "host_only": Graph has no host-only chat mode, so the
                                 stricter one is applied
    mute_on_entry      yes       allowAttendeeToEnableMic = false (attendees stay muted
                                 until the organizer lets them speak)
    per_invitee_links  no        one joinWebUrl for everyone
    invitee_domains    no        a shared link works for whoever holds it
    max_duration       no        Teams does not end a meeting at endDateTime

Graph has no call that ends an online meeting for everyone (the subset has none either),
so END_FOR_ALL is not offered. Past participants come from attendance reports.

LOCK sets the lobby so that only the organizer bypasses it (dial-in callers included):
whoever joins from then on waits until the organizer admits them. EXPEL is not offered:
Graph removes a participant only from a call the app itself has joined as a bot
(`/communications/calls/{call-id}/participants`), and an online meeting's attendance
records carry no such call id; the organizer removes people in the Teams window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import structlog

from provisioner.policy.model import Control
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
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnsupported,
)
from provisioner.providers.teams.client import PROVIDER_NAME, GraphClient, JsonObject
from provisioner.providers.teams.config import TeamsConfig
from provisioner.providers.teams.mapping import (
    create_or_get_body,
    event_body,
    event_times,
    graph_time,
    meeting_options,
    observe,
    participant,
    requested,
    section,
)

log = structlog.get_logger(__name__)

# Only the organizer bypasses the lobby; phone callers wait too.
LOCKED_LOBBY = {"scope": "organizer", "isDialInBypassEnabled": False}


class TeamsProvider:
    """Microsoft Teams meetings created through Graph; see the module docstring.

    Args:
        config: the validated `[providers.teams]` settings.
        client: a ready `GraphClient` (tests pass one wired to a simulator or Prism).
    """

    name: str = PROVIDER_NAME
    config_model: ClassVar[type[TeamsConfig]] = TeamsConfig
    capabilities: frozenset[Control] = frozenset(
        {
            Control.PASSCODE,
            Control.WAITING_ROOM,
            Control.JOIN_BEFORE_HOST,
            Control.SIGN_IN_REQUIRED,
            Control.PRESENTERS,
            Control.CHAT,
            Control.MUTE_ON_ENTRY,
        }
    )
    features: frozenset[Feature] = frozenset(
        {Feature.RESCHEDULE, Feature.PARTICIPANTS, Feature.LOCK}
    )

    def __init__(
        self,
        config: TeamsConfig,
        *,
        client: GraphClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._client = client or GraphClient(config, transport=transport)

    @classmethod
    def from_config(cls, config: TeamsConfig) -> TeamsProvider:
        """Build the provider from its validated settings (used by the registry)."""
        return cls(config)

    @property
    def client(self) -> GraphClient:
        return self._client

    def _organizer(self, spec: MeetingSpec) -> str:
        return self._config.organizer_user_id or spec.host.email.strip().lower()

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        """Create (or adopt, on a retry) the meeting for `spec.meeting_id` and apply options.

        Raises:
            ProviderRejected: the schedule is impossible or Graph refused a value.
            ProviderAuthFailed: the app's credentials or access policy are missing.
            ProviderRetriable: Graph stayed unavailable through every retry.
        """
        _check_schedule(spec)
        organizer = self._organizer(spec)
        reference = {"organizer": organizer}
        meeting_id = ""
        try:
            if self._config.use_calendar_event:
                event = await self._client.create_event(organizer, event_body(spec))
                reference["event_id"] = _required_str(event, "id")
                meeting = await self._meeting_for_event(organizer, event)
            else:
                meeting = await self._client.create_or_get(organizer, create_or_get_body(spec))
            meeting_id = _required_str(meeting, "id")
            meeting = await self._client.update_meeting(
                organizer, meeting_id, meeting_options(spec.settings)
            )
            return self._provisioned(spec, meeting, reference)
        except Exception:
            # A meeting with the tenant's defaults must not outlive a failed create. (One
            # whose create never answered is found again by externalId on the next try.)
            if meeting_id or "event_id" in reference:
                await self._discard(MeetingRef(meeting_id, reference))
            raise

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        """Read the meeting back and compare every control Teams applies."""
        organizer = created.reference.get("organizer") or self._organizer(spec)
        meeting = await self._client.get_meeting(organizer, created.provider_meeting_id)
        observed = observe(spec.settings, meeting)
        mismatched = dict(observed.mismatched)
        passcode = section(meeting, "joinMeetingIdSettings").get("passcode")
        if Control.PASSCODE in observed.confirmed and passcode != created.host.passcode:
            mismatched[Control.PASSCODE] = "the passcode differs from the one delivered"
        if meeting.get("joinWebUrl") != created.host.url:
            for control in requested(spec.settings):
                mismatched.setdefault(control, "the read-back is a different meeting")
        return ObservedSettings(
            confirmed=observed.confirmed - mismatched.keys(), mismatched=mismatched
        )

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        """Move or rename the same meeting; the join link and passcode stay the same."""
        _check_schedule(spec)
        organizer = meeting.reference.get("organizer") or self._organizer(spec)
        event_id = meeting.reference.get("event_id")
        options = meeting_options(spec.settings)
        if event_id:
            await self._client.update_event(organizer, event_id, event_times(spec))
        else:
            options |= {
                "subject": spec.topic,
                "startDateTime": graph_time(spec.start),
                "endDateTime": graph_time(spec.end),
            }
        updated = await self._client.update_meeting(organizer, meeting.provider_meeting_id, options)
        return self._provisioned(spec, updated, dict(meeting.reference))

    async def delete(self, meeting: MeetingRef) -> None:
        """Delete the meeting (or its calendar event); one already gone is fine."""
        organizer = meeting.reference.get("organizer")
        if not organizer:
            raise ProviderRejected(
                "the meeting reference has no organizer", provider=PROVIDER_NAME, field="reference"
            )
        event_id = meeting.reference.get("event_id")
        if event_id:
            await self._client.delete_event(organizer, event_id)
        else:
            await self._client.delete_meeting(organizer, meeting.provider_meeting_id)

    async def end(self, meeting: MeetingRef) -> None:
        """Not offered (no END_FOR_ALL): Graph cannot end an online meeting for everyone."""
        raise ProviderUnsupported(
            "Graph has no call to end an online meeting for everyone; the organizer can "
            "use 'End meeting' in Teams",
            provider=PROVIDER_NAME,
            feature=Feature.END_FOR_ALL,
        )

    async def list_participants(self, meeting: MeetingRef) -> Sequence[Participant]:
        """Past participants from the attendance reports (none while the first call runs)."""
        organizer = meeting.reference.get("organizer")
        if not organizer:
            raise ProviderNotFound("the meeting reference has no organizer", provider=PROVIDER_NAME)
        reports = await self._client.attendance_reports(organizer, meeting.provider_meeting_id)
        return [
            participant(record)
            for report in reports
            for record in report.get("attendanceRecords") or []
            if isinstance(record, dict)
        ]

    async def lock(self, meeting: MeetingRef) -> None:
        """Send everyone but the organizer to the lobby from now on; the answer must show
        it (a tenant policy that keeps the lobby open makes this fail loudly)."""
        organizer = meeting.reference.get("organizer")
        if not organizer:
            raise ProviderNotFound("the meeting reference has no organizer", provider=PROVIDER_NAME)
        updated = await self._client.update_meeting(
            organizer, meeting.provider_meeting_id, {"lobbyBypassSettings": LOCKED_LOBBY}
        )
        lobby = section(updated, "lobbyBypassSettings")
        if lobby.get("scope") != "organizer" or lobby.get("isDialInBypassEnabled") is not False:
            raise ProviderRejected(
                "teams: the lobby stayed open (a tenant meeting policy may override it)",
                provider=PROVIDER_NAME,
                field="lobbyBypassSettings",
            )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _meeting_for_event(self, organizer: str, event: JsonObject) -> JsonObject:
        online = event.get("onlineMeeting")
        join_url = online.get("joinUrl") if isinstance(online, dict) else None
        if not isinstance(join_url, str) or not join_url:
            raise ProviderError(
                f"{PROVIDER_NAME}: the event has no Teams meeting", provider=PROVIDER_NAME
            )
        meeting = await self._client.find_meeting_by_join_url(organizer, join_url)
        if meeting is None:
            raise ProviderError(
                f"{PROVIDER_NAME}: the event's Teams meeting was not found", provider=PROVIDER_NAME
            )
        return meeting

    async def _discard(self, meeting: MeetingRef) -> None:
        try:
            await self.delete(meeting)
        except ProviderError as error:
            log.warning(
                "provider.cleanup_failed", provider=PROVIDER_NAME, error_type=type(error).__name__
            )

    def _provisioned(
        self, spec: MeetingSpec, meeting: Mapping[str, Any], reference: Mapping[str, str]
    ) -> ProvisionedMeeting:
        join_url = _required_str(meeting, "joinWebUrl")
        passcode = section(meeting, "joinMeetingIdSettings").get("passcode")
        join = JoinDetails(
            url=join_url, passcode=passcode if isinstance(passcode, str) and passcode else None
        )
        return ProvisionedMeeting(
            provider_meeting_id=_required_str(meeting, "id"),
            host=join,
            shared=join,
            personal={},
            enforced=requested(spec.settings) & self.capabilities,
            reference=dict(reference),
        )


def _required_str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderError(f"{PROVIDER_NAME}: the answer has no {key}", provider=PROVIDER_NAME)
    return value


def _check_schedule(spec: MeetingSpec) -> None:
    if spec.start.tzinfo is None or spec.start.utcoffset() is None:
        raise ProviderRejected(
            "start must be timezone-aware", provider=PROVIDER_NAME, field="start"
        )
    if spec.duration <= timedelta(0):
        raise ProviderRejected(
            "duration must be positive", provider=PROVIDER_NAME, field="duration"
        )
