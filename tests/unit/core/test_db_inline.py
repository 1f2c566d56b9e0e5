"""SQLite statements run on the event loop, and wait for another process's lock off it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text

from provisioner.db import Database, create_engine
from provisioner.settings import DatabaseSettings


def _database(path: Path) -> Database:
    return Database(create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}")))


async def test_reads_long_results_and_streams(tmp_path: Path) -> None:
    db = _database(tmp_path / "t.db")
    try:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE t (n INTEGER)"))
            await session.execute(
                text("INSERT INTO t VALUES (:n)"), [{"n": n} for n in range(1000)]
            )
        async with db.session() as session:
            rows = (await session.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
            assert rows == list(range(1000))
            streamed = [n async for n in await session.stream_scalars(text("SELECT n FROM t"))]
            assert sorted(streamed) == list(range(1000))
    finally:
        await db.dispose()


async def test_waits_for_another_process_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = _database(path)
    try:
        async with db.session() as session:
            await session.execute(text("CREATE TABLE t (n INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write lock
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())

        async def write() -> None:
            async with db.session() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the lock...
        assert ticks >= 10  # ...while the loop keeps running
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(writing, 5)
        ticker.cancel()
        async with db.session() as session:
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 1
    finally:
        await db.dispose()
