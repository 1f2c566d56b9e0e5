"""Settle what a crash left half-done.

A process killed between the provider call and the final commit leaves a meeting in
`provisioning` and its idempotency claim `in_flight`. After `stale_after_seconds` such a
meeting is marked failed (audited as reconciled) and its claim released, so the client's
retry with the same key provisions afresh instead of waiting forever. Where the provider
can find the meeting the interrupted create left behind (`FindsOrphans`: Zoom and Webex,
by the marker they carry), the orphan is deleted here, so no live meeting exists that
nobody was told about. Teams and Google creates are idempotent by our id and adopt on
retry; Jitsi keeps no server-side state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

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
    """Fail stale `provisioning` meetings, delete their orphans, release their claims.

    Returns how many meetings were settled.
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
    if stale or purged:
        log.info("meeting.reconciled", meetings=len(stale), expired_keys=purged)
    return len(stale)


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
