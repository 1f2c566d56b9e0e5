"""A provider that records calls and can be told to fail or to contradict itself."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

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
from provisioner.providers.errors import ProviderError

ALL = frozenset(Control)


@dataclass
class FakeProvider:
    name: str = "fake"
    capabilities: frozenset[Control] = ALL
    features: frozenset[Feature] = frozenset(Feature)
    participants: list[Participant] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    expelled: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    create_failures: list[ProviderError] = field(default_factory=list)
    mismatch: dict[Control, str] = field(default_factory=dict)
    unconfirmed: frozenset[Control] = frozenset()  # read back as neither right nor wrong
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        if self.create_failures:
            raise self.create_failures.pop(0)
        meeting_id = f"fake-{secrets.token_hex(8)}"
        self.created.append(meeting_id)
        return ProvisionedMeeting(
            provider_meeting_id=meeting_id,
            host=JoinDetails(
                url=f"https://fake.test/{meeting_id}?role=host", passcode=secrets.token_hex(6)
            ),
            shared=JoinDetails(
                url=f"https://fake.test/{meeting_id}", passcode=secrets.token_hex(6)
            ),
            personal={},
            enforced=self.capabilities,
        )

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        return ObservedSettings(
            confirmed=self.capabilities - set(self.mismatch) - self.unconfirmed,
            mismatched=dict(self.mismatch),
        )

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        return ProvisionedMeeting(
            provider_meeting_id=meeting.provider_meeting_id,
            host=JoinDetails(
                url=f"https://fake.test/{meeting.provider_meeting_id}?role=host",
                passcode=secrets.token_hex(6),
            ),
            shared=JoinDetails(
                url=f"https://fake.test/{meeting.provider_meeting_id}",
                passcode=secrets.token_hex(6),
            ),
            personal={},
            enforced=self.capabilities,
            reference=meeting.reference,
        )

    async def delete(self, meeting: MeetingRef) -> None:
        self.deleted.append(meeting.provider_meeting_id)

    async def revoke_invitees(self, meeting: MeetingRef, emails: Sequence[str]) -> None:
        self.revoked.extend(emails)

    async def end(self, meeting: MeetingRef) -> None:
        self.ended.append(meeting.provider_meeting_id)

    async def expel(self, meeting: MeetingRef, participant_id: str) -> None:
        self.expelled.append(participant_id)
        self.participants = [
            p for p in self.participants if p.provider_participant_id != participant_id
        ]

    async def lock(self, meeting: MeetingRef) -> None:
        self.locked.append(meeting.provider_meeting_id)

    async def list_participants(self, meeting: MeetingRef) -> list[Participant]:
        return list(self.participants)

    async def aclose(self) -> None:
        return None
