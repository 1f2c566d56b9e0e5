"""Settle what a crash left half-done.

A process killed between the provider call and the final commit leaves a meeting in
`provisioning` and its idempotency claim `in_flight`. After `stale_after_seconds` such a
meeting is marked failed (audited as reconciled) and its claim released, so the client's
retry with the same key provisions afresh instead of waiting forever. Providers that can
look a meeting up by our external id will delete the orphan here as well (providers
issue); Jitsi keeps no server-side state, so there is nothing to delete.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import delete, select

from provisioner.audit.service import record_event
from provisioner.db import Database, utcnow
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.idempotency.service import purge_expired
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.settings import IdempotencySettings

log = structlog.get_logger(__name__)


async def reconcile_stale(db: Database, *, settings: IdempotencySettings) -> int:
    """Fail stale `provisioning` meetings and release their claims; returns how many."""
    cutoff = utcnow() - timedelta(seconds=settings.stale_after_seconds)
    async with db.session() as session:
        stale = (
            await session.scalars(
                select(Meeting).where(
                    Meeting.state == MeetingState.PROVISIONING, Meeting.updated_at < cutoff
                )
            )
        ).all()
        for meeting in stale:
            meeting.state = MeetingState.FAILED
            meeting.failure = "interrupted"
            await record_event(
                session,
                actor="system",
                action="meeting.reconciled",
                target_type="meeting",
                target_id=meeting.id,
                details={"reason": "interrupted while provisioning", "provider": meeting.provider},
            )
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.state == KeyState.IN_FLIGHT, IdempotencyKey.created_at < cutoff
            )
        )
        purged = await purge_expired(session)
    if stale or purged:
        log.info("meeting.reconciled", meetings=len(stale), expired_keys=purged)
    return len(stale)
