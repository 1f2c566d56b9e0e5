"""PostgreSQL: a pooled connection is proved alive by its transaction's own BEGIN.

`provisioner.db._begin_on_checkout` replaces SQLAlchemy's `pool_pre_ping` (three round
trips on asyncpg) with the BEGIN the transaction sends anyway. What must still hold: a
connection the server dropped is replaced before anyone uses it, no transaction is left
open by a checkout that ran nothing, and AUTOCOMMIT connections still run outside one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from provisioner.db import Database, create_engine
from provisioner.settings import DatabaseSettings
from tests.conftest import PG_ENV

pytestmark = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")


@pytest.fixture
async def db(postgres_database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(DatabaseSettings(url=postgres_database_url)))
    yield database
    await database.dispose()


@pytest.fixture
async def admin(postgres_database_url: str) -> AsyncIterator[AsyncEngine]:
    """Another client of the server, as a DBA or a failover would be."""
    engine = create_async_engine(postgres_database_url, poolclass=NullPool)
    yield engine
    await engine.dispose()


def simple_queries(db: Database) -> list[str]:
    """The simple-protocol queries (BEGIN, COMMIT, ROLLBACK, pings) each connection sends."""
    sent: list[str] = []

    @event.listens_for(db.engine.sync_engine, "connect")
    def log_queries(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda query: sent.append(query.query))

    return sent


async def backend_pid(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


async def backend_state(admin: AsyncEngine, pid: int) -> str | None:
    async with admin.connect() as connection:
        state = await connection.scalar(
            text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    return None if state is None else str(state)


async def test_a_reused_connection_sends_no_ping(db: Database) -> None:
    sent = simple_queries(db)
    await backend_pid(db)  # a fresh connection
    sent.clear()
    await backend_pid(db)  # the pooled one again
    assert sent == ["BEGIN;", "COMMIT;"]  # pre-ping added "BEGIN;", ";", "ROLLBACK;"


async def test_a_connection_the_server_dropped_is_replaced_at_checkout(
    db: Database, admin: AsyncEngine
) -> None:
    first = await backend_pid(db)
    async with admin.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    second = await backend_pid(db)  # no error reaches the caller
    assert second != first


async def test_a_checkout_that_runs_nothing_leaves_no_transaction_open(
    db: Database, admin: AsyncEngine
) -> None:
    pid = await backend_pid(db)
    async with db.engine.connect():
        pass  # checked out (its BEGIN sent) and returned unused
    assert await backend_state(admin, pid) == "idle"  # not "idle in transaction"


async def test_autocommit_connections_still_run_outside_a_transaction(db: Database) -> None:
    await backend_pid(db)  # the next checkout reuses a pooled connection
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        first = await autocommit.scalar(text("SELECT pg_current_xact_id()::text"))
        second = await autocommit.scalar(text("SELECT pg_current_xact_id()::text"))
    assert first != second  # each statement its own transaction
    async with db.session() as session:  # and transactional again once returned
        ids = [await session.scalar(text("SELECT pg_current_xact_id()::text")) for _ in "ab"]
    assert ids[0] == ids[1]
