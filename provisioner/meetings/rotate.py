"""Rotate a leaked link: a new meeting with a new passcode replaces the old one.

The steps, each safe to interrupt:

1. (transaction) lock the old meeting; refuse if a rotation is already running; insert the
   new meeting as `provisioning` with `rotated_from_id` set, same settings and invitees;
2. (no transaction) create it at the same provider and read it back, exactly as
   `provision_meeting` does -- a failure deletes what was created, marks the new row failed
   and leaves the old meeting untouched and live (the caller gets the error);
3. (transaction) store the verified new meeting, queue its invitation to the host and every
   current invitee, and mark the old meeting `rotated`, superseding anything of the old
   meeting still waiting to be sent, so the old link is never sent again;
4. (no transaction) end the old meeting if it is running and the provider can, then delete
   it at the provider. If that fails, `RotationIncomplete` says the old link may still
   work; calling `rotate_meeting` again on the old meeting repeats only this step (deleting
   an already-deleted meeting is not an error) and returns the same new meeting, so a retry
   never creates a second one.

The new meeting keeps the old calendar UID with a higher SEQUENCE, so calendars replace the
entry in place rather than showing two meetings, one of them with a dead link.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, ClassVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.db import utcnow
from provisioner.delivery.base import Method
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.meetings.access import acting_as, get_meeting_for_actor, is_host
from provisioner.meetings.codec import settings_from_json
from provisioner.meetings.enforcement import confirmed_enforcement, restrictive_controls
from provisioner.meetings.errors import MeetingNotChangeable
from provisioner.meetings.lifecycle import CHANGEABLE
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.meetings.read import meeting_read
from provisioner.meetings.repository import delivery_status_by_invitee
from provisioner.meetings.service import START_SKEW, Provisioning
from provisioner.meetings.store import fail_provisioning, store_verified
from provisioner.policy.model import Control
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import (
    Feature,
    MeetingProvider,
    MeetingRef,
    MeetingSpec,
    Person,
    ProvisionedMeeting,
)
from provisioner.providers.errors import ProviderError, ProviderNotFound

log = structlog.get_logger(__name__)

# An ended meeting can still be rotated: ending a disrupted call empties it, but its link
# stays live at the provider (the host can start it again, and the leaked link with it), so
# the usual response -- end it now, then replace the leaked link -- must work in that order.
ROTATABLE = CHANGEABLE | {MeetingState.ENDED}


class RotateRequest(BaseModel):
    """The body of POST /api/v1/meetings/{id}/rotate (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        default="link leaked",
        min_length=1,
        max_length=200,
        description="Why the link is being replaced; audited on both meetings.",
    )

    @field_validator("reason")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must be one line of plain text")
        return value


class RotationInProgress(MeetingNotChangeable):
    """Another rotation of the same meeting has not finished; retrying later is safe."""

    code: ClassVar[str] = "rotation-in-progress"
    title: ClassVar[str] = "The meeting's link is already being rotated"

    def __init__(self, meeting_id: str) -> None:
        super().__init__(meeting_id, state="being rotated")
        self.detail = f"meeting {meeting_id} is already being rotated; try again shortly"
        self.args = (self.detail,)


class RotationIncomplete(ProviderError):
    """The new meeting exists and was sent out, but the old one could not be removed at
    the provider: its link may still work until the rotation is retried."""

    code: ClassVar[str] = "rotation-incomplete"
    title: ClassVar[str] = "The new link was sent, but the old meeting is still live"

    def __init__(self, old_id: str, new_id: str, *, provider: str) -> None:
        super().__init__(
            f"meeting {new_id} replaces {old_id} and its details were queued to everyone, "
            f"but {provider} did not delete {old_id}, so the old link may still work: "
            f"rotate {old_id} again to retry, or delete it in {provider} yourself",
            provider=provider,
        )
        self.old_id = old_id
        self.new_id = new_id


async def rotate_meeting(
    deps: Provisioning,
    *,
    meeting_id: str,
    actor: Principal,
    provider: MeetingProvider,
    reason: str,
) -> dict[str, Any]:
    """Replace meeting `meeting_id` with a new one and deliver the new details privately.

    Returns:
        The new meeting's read body (`MeetingRead`); the host's own link only when the
        actor is the host.

    Raises:
        MeetingNotFound: no such meeting, or the actor is neither host nor responder.
        MeetingNotChangeable: the meeting is cancelled or failed (an ended meeting can be
            rotated: its link still works at the provider until it is deleted).
        RotationInProgress: another rotation of it is still running.
        ProviderError / VerificationFailed / ControlNotEnforceable: the new meeting could
            not be created as the policy demands; the old one is unchanged and live.
        RotationIncomplete: the new meeting is out, the old one is not yet deleted.
    """
    reason = " ".join(reason.split())[:200] or "link leaked"  # one line in the audit trail
    async with deps.db.session() as session:
        old = await get_meeting_for_actor(
            session, meeting_id=meeting_id, actor=actor, for_update=True
        )
        successor = await _latest_successor(session, old.id)
        if successor is not None and successor.state == MeetingState.PROVISIONING:
            if not _abandoned(successor, deps):
                raise RotationInProgress(old.id)
            await _give_up(session, successor)
            successor = None
        if old.state == MeetingState.ROTATED and successor is not None:
            resume: str | None = successor.id
        elif old.state not in ROTATABLE:
            raise MeetingNotChangeable(old.id, state=old.state)
        else:
            resume = None
            spec, channel_of = _spec_for_successor(old)
            must_enforce = frozenset(Control(c) for c in old.enforced)
            if is_host(old, actor):
                must_enforce |= effective_for_groups(deps.policy, actor.groups).must_enforce
            session.add(_successor_row(old, spec))
            await record_event(
                session,
                actor=actor.subject,
                action="meeting.rotation_started",
                target_type="meeting",
                target_id=old.id,
                details={"new_meeting_id": spec.meeting_id, "as": acting_as(old, actor)},
            )
        old_ref = _ref(old)
        running = (
            old.state != MeetingState.ENDED
            and old.starts_at - START_SKEW <= utcnow() <= old.ends_at
        )
        old_id = old.id

    if resume is None:
        resume = await _provision_successor(
            deps,
            old_id=old_id,
            spec=spec,
            channel_of=channel_of,
            must_enforce=must_enforce,
            actor=actor,
            provider=provider,
            reason=reason,
        )
    await _retire_at_provider(
        deps, old_id=old_id, new_id=resume, ref=old_ref, running=running, provider=provider
    )
    log.info("meeting.rotated", meeting_id=old_id, new_meeting_id=resume)
    async with deps.db.session() as session:
        new = await get_meeting_for_actor(session, meeting_id=resume, actor=actor)
        status = await delivery_status_by_invitee(session, new.id)
        return meeting_read(
            new, cipher=deps.cipher, include_host_join=is_host(new, actor), delivery_status=status
        )


async def _latest_successor(session: AsyncSession, old_id: str) -> Meeting | None:
    """The newest meeting that replaced `old_id` and did not fail."""
    found: Meeting | None = await session.scalar(
        select(Meeting)
        .where(Meeting.rotated_from_id == old_id, Meeting.state != MeetingState.FAILED)
        .order_by(Meeting.created_at.desc())
        .limit(1)
    )
    return found


def _abandoned(successor: Meeting, deps: Provisioning) -> bool:
    """A rotation whose process died mid-way (the same rule as `reconcile_stale`): without
    this, the meeting could not be rotated again until some process restarted."""
    stale = timedelta(seconds=deps.settings.idempotency.stale_after_seconds)
    return successor.updated_at < utcnow() - stale


async def _give_up(session: AsyncSession, successor: Meeting) -> None:
    """Mark an abandoned attempt failed so a new one may start. Nobody was sent its details;
    a meeting it may have left at the provider is not looked for here (that is a provider
    call inside this transaction), so the audit event says so for IT."""
    successor.state = MeetingState.FAILED
    successor.failure = "interrupted"
    await record_event(
        session,
        actor="system",
        action="meeting.reconciled",
        target_type="meeting",
        target_id=successor.id,
        details={
            "reason": "rotation interrupted",
            "provider": successor.provider,
            "orphan": "not checked",
        },
    )


def _ref(meeting: Meeting) -> MeetingRef | None:
    if meeting.provider_meeting_id is None:
        return None
    return MeetingRef(meeting.provider_meeting_id, dict(meeting.reference))


def _spec_for_successor(old: Meeting) -> tuple[MeetingSpec, dict[str, str]]:
    """The same meeting again: topic, times, settings, host and current invitees."""
    spec = MeetingSpec(
        meeting_id=str(uuid.uuid4()),
        topic=old.topic,
        start=old.starts_at,
        duration=timedelta(seconds=(old.ends_at - old.starts_at).total_seconds()),
        timezone=old.timezone,
        host=Person(email=old.host_email, name=old.host_name),
        invitees=tuple(Person(email=i.email, name=i.name) for i in old.current_invitees),
        settings=settings_from_json(old.settings),
    )
    return spec, {i.email: i.channel for i in old.current_invitees}


def _successor_row(old: Meeting, spec: MeetingSpec) -> Meeting:
    return Meeting(
        id=spec.meeting_id,
        host_subject=old.host_subject,
        requested_by=old.requested_by,  # the same calendar entry stays the integration's
        host_email=old.host_email,
        host_name=old.host_name,
        topic=old.topic,
        provider=old.provider,
        state=MeetingState.PROVISIONING,
        starts_at=old.starts_at,
        ends_at=old.ends_at,
        timezone=old.timezone,
        settings=dict(old.settings),
        # The calendar entry is the same event: same UID, a higher SEQUENCE (set when the
        # old meeting is retired, in the transaction that queues the new invitations).
        ics_uid=old.ics_uid,
        sequence=old.sequence + 1,
        rotated_from_id=old.id,
    )


async def _provision_successor(
    deps: Provisioning,
    *,
    old_id: str,
    spec: MeetingSpec,
    channel_of: dict[str, str],
    must_enforce: frozenset[Control],
    actor: Principal,
    provider: MeetingProvider,
    reason: str,
) -> str:
    """Steps 2 and 3: create and verify the new meeting, then store it and retire the old."""

    async def retire_old(session: AsyncSession, new: Meeting) -> None:
        old = await session.get(Meeting, old_id, with_for_update=True)
        if old is None or old.state not in ROTATABLE:
            # Cancelled (or rotated) while we were at the provider: the new meeting must
            # not go out; raising here makes `fail_provisioning` delete it.
            raise MeetingNotChangeable(old_id, state=old.state if old else "gone")
        right = acting_as(old, actor)
        old.sequence += 1
        old.state = MeetingState.ROTATED
        new.sequence = max(new.sequence, old.sequence)
        superseded = await session.execute(
            update(Delivery)
            .where(
                Delivery.meeting_id == old.id,
                Delivery.status == DeliveryStatus.PENDING,
                Delivery.role.notin_(("alert", "notice")),  # reports of what happened
                # A cancellation to someone taken off before the rotation still goes out:
                # the new meeting invites only the others, so nothing else would tell them.
                Delivery.method != Method.CANCEL,
            )
            .values(status=DeliveryStatus.SUPERSEDED)
        )
        await record_event(
            session,
            actor=actor.subject,
            action="meeting.rotated",
            target_type="meeting",
            target_id=old.id,
            details={
                "new_meeting_id": new.id,
                "reason": reason,
                "as": right,
                "deliveries_superseded": int(getattr(superseded, "rowcount", 0) or 0),
            },
        )
        await record_event(
            session,
            actor=actor.subject,
            action="meeting.replaces",
            target_type="meeting",
            target_id=new.id,
            details={"rotated_from_id": old.id, "reason": reason, "as": right},
        )

    created: ProvisionedMeeting | None = None
    try:
        created = await provider.create(spec, idempotency_key=spec.meeting_id)
        observed = await provider.verify(spec, created)
        enforced, not_enforced = confirmed_enforcement(
            restrictive_controls(spec.settings),
            created,
            observed,
            meeting_id=spec.meeting_id,
            must_enforce=must_enforce,
        )
        await store_verified(
            deps,
            spec=spec,
            channel_of=channel_of,
            created=created,
            enforced=enforced,
            not_enforced=not_enforced,
            requester=actor,
            claim=None,
            reveal_host_join=False,
            also=retire_old,
        )
    except BaseException as failure:
        await fail_provisioning(
            deps,
            meeting_id=spec.meeting_id,
            requester=actor,
            provider=provider,
            created=created,
            claim=None,
            failure=failure,
        )
        async with deps.db.session() as session:
            await record_event(
                session,
                actor="system",
                action="meeting.rotation_failed",
                target_type="meeting",
                target_id=old_id,
                details={
                    "new_meeting_id": spec.meeting_id,
                    "reason": getattr(failure, "code", type(failure).__name__),
                    "old_meeting_unchanged": True,
                },
            )
        log.warning("meeting.rotation_failed", meeting_id=old_id, provider=provider.name)
        raise
    return spec.meeting_id


async def _retire_at_provider(
    deps: Provisioning,
    *,
    old_id: str,
    new_id: str,
    ref: MeetingRef | None,
    running: bool,
    provider: MeetingProvider,
) -> None:
    """Step 4: end the old meeting if it is running, then delete it at the provider."""
    ended = deleted = False
    failure: str | None = None
    if ref is not None:
        if running and Feature.END_FOR_ALL in provider.features:
            try:
                await provider.end(ref)
                ended = True
            except ProviderNotFound:
                pass  # nobody in it, or already gone: the delete below settles it
            except ProviderError as exc:
                failure = exc.code  # the delete may still close it
        try:
            await provider.delete(ref)
            deleted = True
        except ProviderNotFound:
            deleted = True
        except ProviderError as exc:
            failure = exc.code
    else:
        deleted = True  # never created at the provider: nothing can leak from it
    async with deps.db.session() as session:
        await record_event(
            session,
            actor="system",
            action="meeting.rotation_completed" if deleted else "meeting.rotation_incomplete",
            target_type="meeting",
            target_id=old_id,
            details={
                "new_meeting_id": new_id,
                "ended": ended,
                "deleted_at_provider": deleted,
                "error": failure,
            },
        )
    if not deleted:
        log.error("meeting.rotation_incomplete", meeting_id=old_id, provider=provider.name)
        raise RotationIncomplete(old_id, new_id, provider=provider.name)
