"""In-meeting controls: remove one participant, or lock a running meeting.

Both follow the lifecycle pattern: read the meeting in a short transaction, call the
provider with none open, then audit what was done (and in what right: host or responder).
A provider without the API is never called; the caller gets `ProviderUnsupported` telling
the host what to do in the meeting window instead, because "not supported" alone leaves an
intruder in the call.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import structlog
from pydantic import BaseModel

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.meetings.access import acting_as, get_meeting_for_actor
from provisioner.meetings.errors import MeetingNotChangeable, MeetingNotFound
from provisioner.meetings.lifecycle import CHANGEABLE
from provisioner.meetings.manual_steps import unsupported
from provisioner.meetings.models import Meeting
from provisioner.meetings.service import Provisioning
from provisioner.providers.base import (
    ExpelsParticipants,
    Feature,
    LocksMeetings,
    MeetingProvider,
    MeetingRef,
)
from provisioner.providers.errors import ProviderNotFound

log = structlog.get_logger(__name__)


class ParticipantNotFound(MeetingNotFound):
    """The provider no longer has this participant in the meeting (they left, or the id
    is not one `list_participants` gave)."""

    code: ClassVar[str] = "participant-not-found"
    title: ClassVar[str] = "No such participant in the meeting"

    def __init__(self, meeting_id: str, participant_id: str) -> None:
        super().__init__(meeting_id)
        self.detail = f"participant {participant_id} is not in meeting {meeting_id}"
        self.args = (self.detail,)
        self.participant_id = participant_id


class ControlOutcome(BaseModel):
    """What the provider was asked to do, for the API response (no secrets in it)."""

    meeting_id: str
    action: Literal["expelled", "locked"]
    provider: str
    participant_id: str | None = None


def live_ref(meeting: Meeting) -> MeetingRef:
    """The provider reference of a meeting that can still be acted on."""
    if meeting.state not in CHANGEABLE or meeting.provider_meeting_id is None:
        raise MeetingNotChangeable(meeting.id, state=meeting.state)
    return MeetingRef(meeting.provider_meeting_id, dict(meeting.reference))


async def expel_participant(
    deps: Provisioning,
    *,
    meeting_id: str,
    participant_id: str,
    actor: Principal,
    provider: MeetingProvider,
) -> ControlOutcome:
    """Remove one participant (as `list_participants` named them) from the running meeting.

    Raises:
        MeetingNotFound: no such meeting, or the actor is neither its host nor a responder.
        MeetingNotChangeable: the meeting is over (ended, cancelled, rotated, failed).
        ProviderUnsupported: no API for it; the message says what to do by hand.
        ParticipantNotFound: the provider does not know this participant (any more).
        ProviderError: the provider failed.
    """
    async with deps.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=actor)
        ref = live_ref(meeting)
        right = acting_as(meeting, actor)
    if Feature.EXPEL not in provider.features or not isinstance(provider, ExpelsParticipants):
        raise unsupported(provider, Feature.EXPEL)
    try:
        await provider.expel(ref, participant_id)
    except ProviderNotFound:
        raise ParticipantNotFound(meeting_id, participant_id) from None
    async with deps.db.session() as session:
        await record_event(
            session,
            actor=actor.subject,
            action="meeting.participant_expelled",
            target_type="meeting",
            target_id=meeting_id,
            details={"participant_id": participant_id, "as": right, "provider": provider.name},
        )
    log.info("meeting.participant_expelled", meeting_id=meeting_id, acting_as=right)
    return ControlOutcome(
        meeting_id=meeting_id,
        action="expelled",
        provider=provider.name,
        participant_id=participant_id,
    )


async def lock_meeting(
    deps: Provisioning, *, meeting_id: str, actor: Principal, provider: MeetingProvider
) -> ControlOutcome:
    """Admit nobody new to the running meeting (lock it, or send newcomers to the lobby).

    Raises:
        MeetingNotFound, MeetingNotChangeable, ProviderUnsupported, ProviderError.
    """
    async with deps.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=actor)
        ref = live_ref(meeting)
        right = acting_as(meeting, actor)
    if Feature.LOCK not in provider.features or not isinstance(provider, LocksMeetings):
        raise unsupported(provider, Feature.LOCK)
    await provider.lock(ref)
    async with deps.db.session() as session:
        await record_event(
            session,
            actor=actor.subject,
            action="meeting.locked",
            target_type="meeting",
            target_id=meeting_id,
            details={"as": right, "provider": provider.name},
        )
    log.info("meeting.locked", meeting_id=meeting_id, acting_as=right)
    return ControlOutcome(meeting_id=meeting_id, action="locked", provider=provider.name)
