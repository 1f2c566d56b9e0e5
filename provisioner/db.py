"""Async engine and session factory for SQLite (the embedded default) and PostgreSQL.

SQLite gets WAL, `synchronous=NORMAL`, a busy timeout and a pool of ONE connection: measured
on this machine, writers queueing on SQLite's database lock through a larger pool gave
lower throughput and a p99 over a second; one connection serialises writes in Python
instead (see ../shared/DESIGN.md, Performance notes). The consequence for callers: never
hold two sessions at once, and never hold one across a network call.

aiosqlite runs each call on the connection's own thread, and SQLAlchemy's adapter makes
three or four such calls per statement (open a cursor, execute, fetch, close), each a
thread hop -- and, even without the hop, a greenlet switch to the loop and back -- that
costs far more CPU than the statement itself. So SQLAlchemy gets our own DBAPI adapter
(`_InlineDBAPI`): buffered statements, commits and rollbacks run in place on the event
loop's thread, and only a lock held by another process sends the call to aiosqlite's
thread to wait there (measured in `bench/provision.py`; see the README's Performance
section). It subclasses SQLAlchemy's aiosqlite adapter classes: SQLAlchemy is pinned to 2.1.

PostgreSQL over asyncpg checks a pooled connection with the transaction's own BEGIN instead
of SQLAlchemy's pre-ping (`_begin_on_checkout`): three round trips fewer per transaction.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from greenlet import getcurrent  # type: ignore[import-untyped]
from sqlalchemy import DateTime, Dialect, TypeDecorator, event
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

from provisioner.settings import DatabaseSettings


class Base(DeclarativeBase):
    """Declarative base for every table; `provisioner.models` imports them all."""


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """Build the engine with the pool and pragmas that suit the backend."""
    url = make_url(settings.url)
    # hide_parameters: a database error's text (logged with its traceback) names the
    # statement, never its values -- emails, sealed join details, a response body.
    kwargs: dict[str, Any] = {"echo": settings.echo, "hide_parameters": True}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
        # `module`: SQLAlchemy's aiosqlite dialect with our DBAPI adapter (`_InlineDBAPI`).
        engine = create_async_engine(url, module=_InlineDBAPI(aiosqlite, sqlite3), **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_size)
    if url.get_driver_name() != "asyncpg":
        return create_async_engine(url, pool_pre_ping=True, **kwargs)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "checkout", _begin_on_checkout)
    return engine


def _begin_on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Prove a pooled asyncpg connection alive with the BEGIN its transaction needs anyway.

    A connection the server has dropped since it was pooled (a restart, a failover,
    `pg_terminate_backend`) must be replaced before a request uses it. SQLAlchemy's
    `pool_pre_ping` does that, but on asyncpg its ping is three round trips (BEGIN, an
    empty query, ROLLBACK: it wraps the ping in a transaction for pgbouncer) before the
    transaction sends its own BEGIN: six of the twenty a create sent to the server in its
    two transactions (counted with `log_statement=all`). Here the transaction starts
    at checkout instead: its BEGIN is the ping, and a dead connection raises
    `DisconnectionError`, on which the pool reconnects and runs this again, as pre-ping
    would. The transaction is the one SQLAlchemy would have begun at the first statement
    (same isolation level; switching a connection to AUTOCOMMIT rolls it back first, and
    the pool resets the level at check-in, so our engines never hand out an autocommit
    connection here), and one checked in unused is rolled back by the pool's reset.
    """
    try:
        await_(dbapi_connection._start_transaction())
    except Exception as error:
        if dbapi_connection._connection.is_closed():
            raise DisconnectionError("the pooled connection was closed by the server") from error
        raise


def _inline_connect(database: str, **kwargs: Any) -> _InlineConnection:
    # Opened on aiosqlite's thread, then used from the event loop's too -- never from both
    # at once (see `_InlineConnection`).
    kwargs["check_same_thread"] = False
    connection = _InlineConnection(lambda: sqlite3.connect(database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite.connect
    return connection


BUSY_TIMEOUT_SECONDS = 30.0  # how long a statement waits for another process's lock
_EAGER_ROWS = 256  # rows a streamed result reads at a time


def _busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY proper: another connection holds the lock, and waiting may help."""
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def _patiently(function: Callable[..., Any], *args: Any) -> Any:
    """On aiosqlite's thread: retry a busy call until the lock is free (SQLite's own busy
    handler does the same; ours runs there so that waiting never blocks the event loop)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = 0.001
    while True:
        try:
            return function(*args)
        except sqlite3.OperationalError as error:
            if not _busy(error) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _now_or_later(connection: _InlineConnection, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` right here, or -- while another process holds the lock -- on
    aiosqlite's thread, this greenlet suspended meanwhile (`await_`) so the loop serves
    other requests. Called from SQLAlchemy's sync layer, inside its greenlet."""
    try:
        return function(*args)
    except sqlite3.OperationalError as error:
        if not _busy(error):
            raise
    return await_(connection._execute(_patiently, function, *args))  # type: ignore[no-untyped-call]


async def _ready() -> None:
    """An awaitable that completes at once."""


def _await_if_required() -> None:
    """Switch to the loop and back once if the `greenlet_spawn` running us demands it.

    `AsyncConnection.execute` (not the session's) raises `AwaitRequired` when its statement
    awaited nothing -- a guard against sync drivers -- and a greenlet switch costs about
    40 us here, more than a statement: so switch only where that guard is on (a local of
    the suspended `greenlet_spawn` frame; SQLAlchemy is pinned below 2.2), once per spawn.
    """
    current = getcurrent()
    if getattr(current, "_provisioner_switched", False):
        return
    frame = current.parent.gr_frame if current.parent is not None else None
    if frame is not None and frame.f_locals.get("_require_await") is True:
        await_(_ready())
        current._provisioner_switched = True


class _SyncCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's buffered aiosqlite cursor, without the async round trips.

    SQLAlchemy's adapter awaits three coroutines per statement (enter the cursor, execute
    and fetch, close), each a greenlet switch to the loop and back, which cost far more
    than the statement. Here the sqlite3 cursor is driven directly from SQLAlchemy's
    greenlet; the rows are read with the statement, as the adapter does for every buffered
    cursor. Streamed results (server-side cursors) keep the async `_InlineCursor`.
    """

    __slots__ = ()
    _awaitable_cursor_close = False  # closing a sqlite3 cursor is a plain call

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        inline: _InlineConnection = self._connection  # type: ignore[assignment]
        self._cursor = inline._conn.cursor()  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    def _run(self, call: Callable[[], object]) -> None:
        inline: _InlineConnection = self._connection  # type: ignore[assignment]
        _await_if_required()
        _now_or_later(inline, call)
        if self._cursor.description:
            self._rows = collections.deque(_now_or_later(inline, self._cursor.fetchall))

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        cursor: sqlite3.Cursor = self._cursor  # type: ignore[assignment]
        params = () if parameters is None else parameters
        self._run(lambda: cursor.execute(operation, params))

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        cursor: sqlite3.Cursor = self._cursor  # type: ignore[assignment]
        rows = list(seq_of_parameters)  # a retry after SQLITE_BUSY must see them all again
        self._run(lambda: cursor.executemany(operation, rows))


class _SyncConnection(AsyncAdapt_aiosqlite_connection):
    """The adapted connection with `_SyncCursor` and commits/rollbacks run in place."""

    __slots__ = ()
    _cursor_cls = _SyncCursor

    def commit(self) -> None:
        inline: _InlineConnection = self._connection  # type: ignore[assignment]
        if inline._connection:
            _now_or_later(inline, inline._conn.commit)

    def rollback(self) -> None:
        inline: _InlineConnection = self._connection  # type: ignore[assignment]
        if inline._connection:
            _now_or_later(inline, inline._conn.rollback)


class _InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite "DBAPI" SQLAlchemy uses, connecting through `_InlineConnection`."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        kw.pop("async_creator_fn", None)
        connection: Any = await_(_inline_connect(*arg, **kw))
        return _SyncConnection(self, connection)


class _InlineCursor:
    """An aiosqlite-shaped cursor whose statement runs on the event loop, and reads.

    Up to `_EAGER_ROWS` rows are read with the statement and the sqlite3 cursor closed; a
    longer result (a streamed `verify_chain`, say) keeps its cursor and is read in further
    calls, so memory stays bounded.
    """

    def __init__(self, connection: _InlineConnection) -> None:
        self._connection = connection
        self._cursor: sqlite3.Cursor | None = None
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _run(self, call: Callable[[sqlite3.Cursor], object]) -> tuple[Any, ...]:
        """Run `call` on a fresh cursor and read what we can."""
        cursor = self._connection._conn.cursor()
        more = False
        try:
            call(cursor)
            rows: list[Any] = []
            if cursor.description is not None:
                rows = cursor.fetchmany(_EAGER_ROWS)
                more = len(rows) == _EAGER_ROWS
            return cursor.description, cursor.rowcount, cursor.lastrowid, rows, more, cursor
        finally:
            if not more:
                cursor.close()

    async def _start(self, call: Callable[[sqlite3.Cursor], object]) -> None:
        await self.close()
        result = await self._connection.run(self._run, call)
        self.description, self.rowcount, self.lastrowid, self._rows, more, cursor = result
        self._cursor = cursor if more else None

    async def execute(self, sql: str, parameters: Any = None) -> _InlineCursor:
        params = () if parameters is None else parameters
        await self._start(lambda cursor: cursor.execute(sql, params))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> _InlineCursor:
        rows = list(parameters)  # a retry after SQLITE_BUSY must see them all again
        await self._start(lambda cursor: cursor.executemany(sql, rows))
        return self

    async def _more(self, size: int | None) -> None:
        cursor = self._cursor
        if cursor is None:
            return
        fetched: list[Any] = await self._connection.run(
            cursor.fetchall if size is None else cursor.fetchmany,
            *(() if size is None else (size,)),
        )
        if size is None or len(fetched) < size:
            await self.close()
        self._rows.extend(fetched)

    async def fetchone(self) -> Any:
        if not self._rows:
            await self._more(_EAGER_ROWS)
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        wanted = self.arraysize if size is None else size
        if len(self._rows) < wanted:
            await self._more(max(wanted - len(self._rows), _EAGER_ROWS))
        batch, self._rows = self._rows[:wanted], self._rows[wanted:]
        return batch

    async def fetchall(self) -> Sequence[Any]:
        await self._more(None)
        rows, self._rows = self._rows, []
        return rows

    async def __aiter__(self) -> AsyncIterator[Any]:
        while rows := await self.fetchmany(_EAGER_ROWS):
            for row in rows:
                yield row

    async def close(self) -> None:
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            cursor.close()


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, with statements run on the event loop's thread.

    A statement on a local SQLite file takes microseconds; handing it to aiosqlite's
    thread and back cost far more CPU (each hop wakes a thread, contends for the GIL and
    wakes the loop, and SQLAlchemy's adapter made three or four hops per statement). So
    statements, commits and rollbacks run inline with SQLite's busy timeout at zero: when
    another process holds the lock, the call is handed to aiosqlite's thread, which waits
    there (`_patiently`) while the loop serves other requests. The pool holds one
    connection and SQLAlchemy awaits each call, so the two threads never use it at once.
    """

    def cursor(self) -> _InlineCursor:  # type: ignore[override]
        return _InlineCursor(self)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` here, or on aiosqlite's thread while the database is busy."""
        try:
            return function(*args)
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        return await self._execute(_patiently, function, *args)  # type: ignore[no-untyped-call]

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        await self.run(self._conn.rollback)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=0")  # waiting for a lock: see `_patiently`
    cursor.close()


class Database:
    """The engine plus a session factory; one per process, kept on `app.state`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commit when the block succeeds, roll back on any exception."""
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware.

    SQLite has no time zone type and hands back naive values; normalising here means no
    caller ever compares a naive and an aware datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
