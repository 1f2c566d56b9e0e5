"""A crash mid-provisioning is settled on restart: the meeting fails, the key is freed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from provisioner.db import utcnow
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.meetings.reconcile import reconcile_stale
from provisioner.settings import IdempotencySettings
from provisioner.state import AppState


class TestReconcileStale:
    async def test_stale_provisioning_meeting_fails_and_releases_its_key(
        self, state: AppState
    ) -> None:
        long_ago = utcnow() - timedelta(hours=1)
        async with state.db.session() as session:
            for meeting_id, when in (("stale", long_ago), ("fresh", utcnow())):
                session.add(
                    Meeting(
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
                        created_at=when,
                        updated_at=when,
                    )
                )
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
