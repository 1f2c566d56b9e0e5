"""Migrations against the models: `upgrade head` builds exactly what the models declare,
and the newest migrations go down and up again cleanly (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from provisioner.migrate import alembic_config, upgrade_async
from provisioner.models import Base


async def _run(url: str, check: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(check)
    finally:
        await engine.dispose()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _meeting_columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("meetings")}


async def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    assert await _run(database_url, _differences) == []


async def test_the_session_and_integration_migrations_go_down_and_up_again(
    database_url: str,
) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0010")
    try:
        assert "browser_sessions" not in await _run(database_url, _tables)  # 0011
        assert "requested_by" not in await _run(database_url, _meeting_columns)  # 0012
    finally:
        await upgrade_async(database_url)
    assert "browser_sessions" in await _run(database_url, _tables)
    assert await _run(database_url, _differences) == []
