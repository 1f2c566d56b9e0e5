"""Settle what a crash left half-done.

A process killed between the provider call and the final commit leaves a meeting in
`provisioning` and its idempotency claim `in_flight`. After `stale_after_seconds` such a
meeting is marked failed (audited as reconciled) and its claim released, so the client's
retry with the same key provisions afresh instead of waiting forever. Where the provider
can find the meeting the interrupted create left behind (`FindsOrphans`: Zoom and Webex,
by the marker they carry), the orphan is deleted here, so no live meeting exists that
nobody was told about. Teams and Google creates are idempotent by our id and adopt on
retry; Jitsi keeps no server-side state.

A failed attempt whose provider meeting could not be deleted at the time (the clean-up
call failed too) is marked `orphan_check_pending`; reconciliation looks for that meeting
again, deletes it, and clears the mark once the provider says it is gone (or cannot look).
Reconciliation runs when the app starts and every `stale_after_seconds` in each worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select

from provisioner.audit.service import record_event
from provisioner.db import Database, utcnow
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.idempotency.service import purge_expired
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.providers.base import FindsOrphans, MeetingProvider
from provisioner.providers.errors import ProviderError
from provisioner.settings import IdempotencySettings

log = structlog.get_logger(__name__)


async def reconcile_stale(
    db: Database,
    *,
    settings: IdempotencySettings,
    providers: Mapping[str, MeetingProvider] | None = None,
) -> int:
    """Fail stale `provisioning` meetings, delete their orphans, release their claims;
    look again for the orphans of failed attempts whose clean-up failed.

    Returns how many stale `provisioning` meetings were settled.
    """
    cutoff = utcnow() - timedelta(seconds=settings.stale_after_seconds)
    async with db.session() as session:  # read, then let go: the lookups are network calls
        stale = (
            await session.scalars(
                select(Meeting).where(
                    Meeting.state == MeetingState.PROVISIONING, Meeting.updated_at < cutoff
                )
            )
        ).all()
    orphans = {
        meeting.id: await _delete_orphan(meeting, (providers or {}).get(meeting.provider))
        for meeting in stale
    }
    async with db.session() as session:
        for meeting_id, orphan in orphans.items():
            meeting = await session.get(Meeting, meeting_id, with_for_update=True)
            if meeting is None or meeting.state != MeetingState.PROVISIONING:
                continue  # it finished (or was settled elsewhere) meanwhile
            meeting.state = MeetingState.FAILED
            meeting.failure = "interrupted"
            await record_event(
                session,
                actor="system",
                action="meeting.reconciled",
                target_type="meeting",
                target_id=meeting.id,
                details={
                    "reason": "interrupted while provisioning",
                    "provider": meeting.provider,
                    "orphan": orphan,
                },
            )
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.state == KeyState.IN_FLIGHT, IdempotencyKey.created_at < cutoff
            )
        )
        purged = await purge_expired(session)
    retried = await _retry_orphan_checks(db, providers or {}, cutoff)
    if stale or purged or retried:
        log.info("meeting.reconciled", meetings=len(stale), expired_keys=purged, orphans=retried)
    return len(stale)


async def _retry_orphan_checks(
    db: Database, providers: Mapping[str, MeetingProvider], cutoff: datetime
) -> int:
    """Look again for the provider meetings failed attempts could not delete."""
    async with db.session() as session:
        pending = (
            await session.scalars(
                select(Meeting).where(
                    Meeting.state == MeetingState.FAILED,
                    Meeting.orphan_check_pending.is_(True),
                    Meeting.updated_at < cutoff,
                )
            )
        ).all()
    settled = 0
    for meeting in pending:
        outcome = await _delete_orphan(meeting, providers.get(meeting.provider))
        if outcome == "check failed":
            continue  # still there, perhaps: the next run tries again
        async with db.session() as session:
            row = await session.get(Meeting, meeting.id, with_for_update=True)
            if row is None or not row.orphan_check_pending:
                continue
            row.orphan_check_pending = False
            await record_event(
                session,
                actor="system",
                action="meeting.orphan_checked",
                target_type="meeting",
                target_id=row.id,
                details={"provider": row.provider, "orphan": outcome},
            )
        settled += 1
    return settled


async def reconcile_periodically(
    db: Database,
    *,
    settings: IdempotencySettings,
    providers: Mapping[str, MeetingProvider],
    stop: asyncio.Event,
) -> None:
    """`reconcile_stale` every `stale_after_seconds` until `stop` (in each worker: the
    statements re-check each row under its lock, so replicas may overlap harmlessly)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.stale_after_seconds)
        if stop.is_set():
            return
        try:
            await reconcile_stale(db, settings=settings, providers=providers)
        except Exception as exc:  # the loop must outlive a dropped connection
            log.error("meeting.reconcile_failed", error_type=type(exc).__name__)


async def _delete_orphan(meeting: Meeting, provider: MeetingProvider | None) -> str:
    """'deleted', 'none', 'not checked' (the provider cannot look it up) or 'check failed'."""
    if provider is None or not isinstance(provider, FindsOrphans):
        return "not checked"
    try:
        found = await provider.find_created(
            meeting.id,
            host_email=meeting.host_email,
            start=meeting.starts_at,
            end=meeting.ends_at,
        )
        if found is None:
            return "none"
        await provider.delete(found)
    except ProviderError as exc:
        # The attempt still fails (its key must be freed), but IT must look at the orphan.
        log.error(
            "meeting.orphan_check_failed",
            meeting_id=meeting.id,
            provider=meeting.provider,
            error_type=type(exc).__name__,
        )
        return "check failed"
    log.warning("meeting.orphan_deleted", meeting_id=meeting.id, provider=meeting.provider)
    return "deleted"
