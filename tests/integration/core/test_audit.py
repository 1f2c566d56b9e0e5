"""The audit chain detects any edited, inserted or deleted event and says where."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import record_event, verify_chain
from provisioner.state import AppState


async def seed(state: AppState, n: int = 5) -> list[int]:
    async with state.db.session() as session:
        for i in range(n):
            await record_event(
                session,
                actor="t",
                action=f"test.event_{i}",
                target_type="meeting",
                target_id=f"m{i}",
                details={"i": i, "passcode": "hunter2"},
            )
    async with state.db.session() as session:
        ids = list((await session.scalars(select(AuditEvent.id).order_by(AuditEvent.id))).all())
    assert len(ids) == n
    return ids


class TestAuditChain:
    async def test_intact_chain_verifies_and_details_are_redacted(self, state: AppState) -> None:
        await seed(state)
        async with state.db.session() as session:
            report = await verify_chain(session)
            details = (await session.scalars(select(AuditEvent.details))).all()
        assert report.ok and report.events == 5
        assert all(d["passcode"] == "[redacted]" for d in details)

    async def test_edited_event_is_found(self, state: AppState) -> None:
        ids = await seed(state)
        async with state.db.session() as session:
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == ids[2]).values(actor="someone-else")
            )
        async with state.db.session() as session:
            report = await verify_chain(session)
        assert report.broken_at == ids[2]

    async def test_deleted_event_is_found(self, state: AppState) -> None:
        ids = await seed(state)
        async with state.db.session() as session:
            await session.execute(delete(AuditEvent).where(AuditEvent.id == ids[1]))
        async with state.db.session() as session:
            report = await verify_chain(session)
        assert report.broken_at == ids[2]
