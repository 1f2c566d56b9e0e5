"""A crash mid-provisioning is settled on restart: the meeting fails, the key is freed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import select

from provisioner.audit.models import AuditEvent
from provisioner.db import utcnow
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.meetings.reconcile import reconcile_periodically, reconcile_stale
from provisioner.settings import IdempotencySettings
from provisioner.state import AppState


def provisioning(meeting_id: str, since: datetime) -> Meeting:
    """A meeting left in `provisioning` since `since` (as a crash leaves it)."""
    return Meeting(
        id=meeting_id,
        host_subject="dana",
        host_email="dana@example.com",
        host_name="Dana",
        topic="t",
        provider="jitsi",
        state=MeetingState.PROVISIONING,
        starts_at=utcnow(),
        ends_at=utcnow(),
        timezone="UTC",
        settings={},
        ics_uid=f"{meeting_id}@p",
        created_at=since,
        updated_at=since,
    )


class TestReconcileStale:
    async def test_stale_provisioning_meeting_fails_and_releases_its_key(
        self, state: AppState
    ) -> None:
        long_ago = utcnow() - timedelta(hours=1)
        async with state.db.session() as session:
            for meeting_id, when in (("stale", long_ago), ("fresh", utcnow())):
                session.add(provisioning(meeting_id, when))
                session.add(
                    IdempotencyKey(
                        scope="dana",
                        key=meeting_id,
                        request_hash="h",
                        state=KeyState.IN_FLIGHT,
                        meeting_id=meeting_id,
                        created_at=when,
                        expires_at=utcnow() + timedelta(hours=24),
                    )
                )
        settled = await reconcile_stale(
            state.db, settings=IdempotencySettings(stale_after_seconds=60)
        )
        assert settled == 1
        async with state.db.session() as session:
            states = dict((await session.execute(select(Meeting.id, Meeting.state))).all())
            keys = (await session.scalars(select(IdempotencyKey.key))).all()
        assert states == {"stale": "failed", "fresh": "provisioning"}
        assert keys == ["fresh"]


class TestOrphanAfterCrash:
    async def test_meeting_created_at_zoom_but_never_committed_is_deleted(
        self, state: AppState
    ) -> None:
        from tests.contract.providers.zoom.test_simulator import Harness, make_spec
        from tests.simulators.zoom import ZoomSimulator

        sim = ZoomSimulator()
        provider = Harness(sim).provider
        spec = make_spec()
        await provider.create(spec, idempotency_key="k")  # the process dies right after this
        assert len(sim.meetings) == 1
        long_ago = utcnow() - timedelta(hours=1)
        async with state.db.session() as session:
            session.add(
                Meeting(
                    id=spec.meeting_id,
                    host_subject="hanna",
                    host_email=spec.host.email,
                    host_name=spec.host.name,
                    topic=spec.topic,
                    provider="zoom",
                    state=MeetingState.PROVISIONING,
                    starts_at=spec.start,
                    ends_at=spec.end,
                    timezone=spec.timezone,
                    settings={},
                    ics_uid="u",
                    created_at=long_ago,
                    updated_at=long_ago,
                )
            )
        try:
            settled = await reconcile_stale(
                state.db,
                settings=IdempotencySettings(stale_after_seconds=60),
                providers={"zoom": provider},
            )
        finally:
            await provider.aclose()
        assert settled == 1
        assert sim.meetings == {}
        async with state.db.session() as session:
            event = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "meeting.reconciled")
                )
            ).one()
        assert event.details["orphan"] == "deleted"


class TestPeriodicReconciliation:
    async def test_a_worker_settles_a_stale_meeting_without_a_restart(
        self, state: AppState
    ) -> None:
        """Start-up is not the only time: each worker reconciles every
        `stale_after_seconds`, so an orphan check that failed is retried while it runs."""
        long_ago = utcnow() - timedelta(hours=1)
        async with state.db.session() as session:
            session.add(provisioning("crashed", long_ago))
        stop = asyncio.Event()
        loop = asyncio.create_task(
            reconcile_periodically(
                state.db,
                settings=IdempotencySettings(stale_after_seconds=0.05),
                providers={},
                stop=stop,
            )
        )
        try:
            for _ in range(600):  # a hang guard, not a timing assertion
                async with state.db.session() as session:
                    found = await session.scalar(
                        select(Meeting.state).where(Meeting.id == "crashed")
                    )
                if found == MeetingState.FAILED:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop  # returns promptly once stopped
        assert found == MeetingState.FAILED
