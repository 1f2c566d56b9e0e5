"""The contract every meeting provider implements.

A provider knows nothing of the database: it gets a `MeetingSpec` (what to create, under
which effective settings) and returns typed results. It declares which policy controls it
can enforce in `capabilities`; the meetings service compares those with the policy and
either refuses the request or reports the control as "not enforced" -- it never calls a
provider for something it did not declare, and a provider never silently drops a control.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from provisioner.policy.model import Control, MeetingSettings


class Feature(StrEnum):
    """Lifecycle operations beyond create/verify/delete that a provider may offer.

    The service never calls a method whose feature is missing; it tells the user instead.
    """

    RESCHEDULE = "reschedule"  # `update` keeps the same meeting and links
    END_FOR_ALL = "end_for_all"  # `end` removes everyone from a running meeting
    PARTICIPANTS = "participants"  # `list_participants` returns live or past attendees
    EXPEL = "expel"  # `ExpelsParticipants.expel` removes one person from a running meeting
    LOCK = "lock"  # `LocksMeetings.lock` admits nobody new to a running meeting


@dataclass(frozen=True)
class Person:
    """A participant as the provider needs to know them."""

    email: str
    name: str


@dataclass(frozen=True)
class MeetingSpec:
    """Everything a provider needs to create one unique meeting.

    `meeting_id` is our own id; providers that accept an external id use it so a retry
    after a crash can find the meeting instead of creating a second one.
    """

    meeting_id: str
    topic: str
    start: datetime
    duration: timedelta
    timezone: str
    host: Person
    invitees: tuple[Person, ...]
    settings: MeetingSettings

    @property
    def end(self) -> datetime:
        """`start` plus the duration of real time, in `start`'s zone. Adding to a zoned
        datetime adds wall-clock time: across a DST change a 2-hour meeting would end 1 or
        3 hours later."""
        return (self.start.astimezone(UTC) + self.duration).astimezone(self.start.tzinfo)


@dataclass(frozen=True)
class JoinDetails:
    """How one person joins. Both fields are secrets: never log or audit them."""

    url: str
    passcode: str | None = None


@dataclass(frozen=True)
class ProvisionedMeeting:
    """What the provider created.

    `host` is the host's way in (with moderator rights where the provider has them).
    `personal` maps an invitee's lower-cased email to their own link when the provider
    issues personal links; otherwise `shared` is the one link every invitee gets.
    `enforced` is the set of controls the provider applied server-side.
    `reference` holds non-secret provider data worth keeping (ids, room names).
    """

    provider_meeting_id: str
    host: JoinDetails
    shared: JoinDetails | None
    personal: Mapping[str, JoinDetails]
    enforced: frozenset[Control]
    reference: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> MeetingRef:
        return MeetingRef(self.provider_meeting_id, self.reference)

    def join_for(self, email: str) -> JoinDetails:
        """The join details to send to one invitee."""
        personal = self.personal.get(email.lower())
        if personal is not None:
            return personal
        if self.shared is None:
            raise LookupError("the provider issued no join details for this invitee")
        return self.shared


@dataclass(frozen=True)
class MeetingRef:
    """Enough to find a meeting at the provider again later (stored, non-secret)."""

    provider_meeting_id: str
    reference: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Participant:
    """Someone the provider saw in the meeting. `email` is None when the provider hides it,
    in which case only `name` can be compared with the invite list (a weak match)."""

    name: str
    email: str | None
    joined_at: datetime | None = None
    left_at: datetime | None = None
    provider_participant_id: str | None = None


@dataclass(frozen=True)
class ObservedSettings:
    """Settings as read back from the provider after create, to prove they took.

    `confirmed` lists the controls whose value the read-back matched; `mismatched` maps a
    control to a non-secret description of what the provider reported instead.
    """

    confirmed: frozenset[Control]
    mismatched: Mapping[Control, str] = field(default_factory=dict)


@runtime_checkable
class MeetingProvider(Protocol):
    """A video platform provisioner can create meetings on."""

    name: str
    capabilities: frozenset[Control]
    features: frozenset[Feature]

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        """Create one new, unique meeting applying `spec.settings`.

        Args:
            spec: what to create.
            idempotency_key: the same for every retry of one logical create, so the
                provider (or our lookup by `spec.meeting_id`) never makes a second meeting.

        Returns:
            The created meeting with the host's and each invitee's join details.

        Raises:
            ProviderRetriable: a timeout, 429 or 5xx; safe to try again later.
            ProviderRejected: the provider refused the request; retrying will not help.
            ProviderAuthFailed: our credentials were refused.
        """
        ...

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        """Read the meeting back and compare every control in `capabilities`.

        Raises:
            ProviderNotFound: the meeting does not exist any more.
            ProviderRetriable: the read failed transiently.
        """
        ...

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        """Move or rename the same meeting (feature RESCHEDULE); links stay valid where the
        provider keeps them, and the returned join details are what invitees should get now.

        Raises:
            ProviderNotFound, ProviderRetriable, ProviderRejected.
        """
        ...

    async def delete(self, meeting: MeetingRef) -> None:
        """Remove a meeting we created (cancellation, failed verification, failed persist).

        Deleting a meeting that is already gone is not an error.

        Raises:
            ProviderRetriable: the delete failed transiently.
        """
        ...

    async def end(self, meeting: MeetingRef) -> None:
        """End a running meeting for everyone (feature END_FOR_ALL).

        Raises:
            ProviderNotFound, ProviderRetriable.
        """
        ...

    async def list_participants(self, meeting: MeetingRef) -> Sequence[Participant]:
        """Live or past participants (feature PARTICIPANTS).

        Raises:
            ProviderNotFound, ProviderRetriable.
        """
        ...

    async def aclose(self) -> None:
        """Release network clients; called once at shutdown."""
        ...


@runtime_checkable
class FindsOrphans(Protocol):
    """A provider that can find a meeting a create left behind, by our meeting id.

    Used after a crash between the provider call and our commit: the meeting exists at the
    provider but not in our database. Providers whose creates are idempotent by our id
    (Teams createOrGet, Google's derived event id) adopt on retry instead; Jitsi keeps no
    server-side state.
    """

    async def find_created(
        self, meeting_id: str, *, host_email: str, start: datetime, end: datetime
    ) -> MeetingRef | None:
        """The provider's meeting for our `meeting_id`, or None.

        Raises:
            ProviderRetriable: the lookup failed transiently.
        """
        ...


@runtime_checkable
class RevokesPersonalLinks(Protocol):
    """A provider whose personal links can be withdrawn (Zoom registrants).

    Used when the host takes someone off a meeting: their link must stop working, not
    merely stop being mentioned. Providers without this keep the link valid (Jitsi tokens
    until they expire; shared links for everyone), and the service says so.
    """

    async def revoke_invitees(self, meeting: MeetingRef, emails: Sequence[str]) -> None:
        """Withdraw the personal links of `emails`.

        Raises:
            ProviderRetriable, ProviderRejected.
        """
        ...


@runtime_checkable
class ExpelsParticipants(Protocol):
    """A provider that can remove one participant from a running meeting (feature EXPEL).

    Webex expels through its API; Zoom's REST API has no such call, so Zoom does not
    implement this and the host is told to remove the person in the meeting window.
    """

    async def expel(self, meeting: MeetingRef, participant_id: str) -> None:
        """Remove the participant `list_participants` reported as `participant_id`.

        Raises:
            ProviderNotFound: the meeting or the participant is gone.
            ProviderRetriable, ProviderRejected.
        """
        ...


@runtime_checkable
class LocksMeetings(Protocol):
    """A provider that can stop anyone new joining a running meeting (feature LOCK):
    locking the meeting, or sending everyone not yet admitted to the lobby."""

    async def lock(self, meeting: MeetingRef) -> None:
        """Lock the meeting (or turn its lobby on for everyone) from now on.

        Raises:
            ProviderNotFound, ProviderRetriable, ProviderRejected.
        """
        ...


@dataclass(frozen=True)
class ExistingMeeting:
    """An upcoming meeting as found at the provider, whoever created it, with the security
    settings the provider reports (for the compliance scan).

    A setting is None when the provider does not report it, so the scan can say "not
    reported" instead of guessing. `created_by` is our meeting id when the provider
    carries our marker (Zoom agenda, Webex integration tag), else None. Nothing here is
    secret: `passcode_set` says whether there is a passcode, never what it is.
    """

    provider: str
    provider_meeting_id: str
    host_email: str
    topic: str
    start: datetime | None
    passcode_set: bool | None
    waiting_room: bool | None
    sign_in_required: bool | None
    join_before_host: bool | None
    personal_meeting_id: bool | None
    created_by: str | None = None
    reference: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> MeetingRef:
        return MeetingRef(self.provider_meeting_id, self.reference)


@runtime_checkable
class ListsMeetings(Protocol):
    """A provider that can list upcoming meetings, including ones provisioner did not
    create, with their observed security settings (for `provisioner scan`)."""

    async def list_upcoming(
        self, *, hosts: Sequence[str], until: datetime
    ) -> Sequence[ExistingMeeting]:
        """Every meeting starting before `until` that has not ended.

        Args:
            hosts: the host addresses to scan; empty means every user the provider lets
                this app enumerate (Zoom: the account's active users; Webex: the
                token's own user).
            until: the end of the scan window.

        Raises:
            ProviderRetriable, ProviderAuthFailed.
        """
        ...


@runtime_checkable
class FixesMeetings(Protocol):
    """A provider that can tighten an existing meeting's security settings in place."""

    async def apply_settings(
        self, meeting: ExistingMeeting, settings: MeetingSettings
    ) -> frozenset[Control]:
        """Apply the policy's passcode, waiting room, sign-in and join-before-host values
        to `meeting` where it is weaker, keeping its id and link.

        Returns:
            The controls that were changed. Adding a passcode means invitees need the
            new one; the caller tells the host.

        Raises:
            ProviderNotFound, ProviderRetriable, ProviderRejected.
        """
        ...
