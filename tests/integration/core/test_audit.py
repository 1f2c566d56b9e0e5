"""The audit chain detects any edited, inserted or deleted event and says where."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, select, text, update

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import _CHAIN_LOCK, record_event, verify_chain
from provisioner.db import Database, create_engine
from provisioner.settings import DatabaseSettings
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
    async def test_concurrent_transactions_keep_one_chain(self, state: AppState) -> None:
        """Transactions committing at once (on PostgreSQL, on separate connections, queued
        on the chain lock) each chain onto the event the one before committed: no fork."""

        async def append(n: int) -> None:
            async with state.db.session() as session:
                await record_event(
                    session, actor="t", action="test.concurrent", target_type="m",
                    target_id=f"m{n}", details={"n": n},
                )  # fmt: skip
                await asyncio.sleep(0)  # let the others open their transactions too

        await asyncio.gather(*(append(n) for n in range(24)))
        async with state.db.session() as session:
            report = await verify_chain(session)
            prevs = (await session.scalars(select(AuditEvent.prev_hash))).all()
        assert report.ok and report.events == 24
        assert len(set(prevs)) == 24  # every event has its own predecessor

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


class TestChainLockOnPostgres:
    async def test_a_transaction_that_waited_for_the_lock_chains_onto_what_it_waited_for(
        self, postgres_database_url: str
    ) -> None:
        """B queues on the chain lock while A holds it; A appends and commits; B must chain
        onto A's event. (A read whose snapshot predates the wait would fork the chain:
        why `audit_chain_head` is VOLATILE, migration 0009.)"""
        db = Database(create_engine(DatabaseSettings(url=postgres_database_url)))
        try:

            async def append(session_label: str) -> None:
                async with db.session() as session:
                    await record_event(
                        session, actor=session_label, action="test.locked",
                        target_type="m", target_id=session_label,
                    )  # fmt: skip

            async with db.session() as holder:
                await holder.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CHAIN_LOCK})
                await record_event(
                    holder, actor="a", action="test.locked", target_type="m", target_id="a"
                )
                waiter = asyncio.create_task(append("b"))
                for _ in range(500):  # until B is queued on the lock (at most ~5 s)
                    async with db.session() as probe:
                        waiting = await probe.scalar(
                            text(
                                "SELECT count(*) FROM pg_locks "
                                "WHERE locktype = 'advisory' AND NOT granted"
                            )
                        )
                    if waiting:
                        break
                    await asyncio.sleep(0.01)
                assert waiting == 1 and not waiter.done()
            await waiter  # A committed (and released the lock) when its block ended
            async with db.session() as session:
                report = await verify_chain(session)
                actors = (
                    await session.scalars(select(AuditEvent.actor).order_by(AuditEvent.id))
                ).all()
            assert list(actors) == ["a", "b"]
            assert report.ok, report.reason
        finally:
            await db.dispose()
