"""Hot-path statements run on the DBAPI cursor, compiled once per dialect.

SQLAlchemy spends about 0.2 ms of CPU per statement on this machine building an execution
context and a result around a statement that SQLite runs in a few microseconds. Creating a
meeting runs about ten statements every time (the idempotency claim, the meeting row, its
invitees and deliveries, the audit chain's read and insert), so that was a fifth of the
request's CPU (README, Performance). A `Prepared` statement is compiled by SQLAlchemy once
per dialect and set of columns -- the same SQL, the same bind processors (JSON, UTC
timestamps), Python-side column defaults and `onupdate` values filled as SQLAlchemy fills
them -- and then runs on the DBAPI cursor of the session's own connection, inside its
transaction. A DBAPI error goes through SQLAlchemy's own handling, so it arrives wrapped
(`IntegrityError`, `OperationalError`...) and a dropped connection is invalidated.

Returned rows (RETURNING, SELECT) go through the columns' result processors, as
SQLAlchemy's would (JSON decoded, UTC timestamps made aware), and come back as plain tuples
named by `Outcome.keys`: no Row or Result objects are built around them. The engine's
cursor events (`before_cursor_execute`, `after_cursor_execute`) fire as usual;
`database.echo` does not print these statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What the statement returned: its rows (plain tuples), the rows it changed, and the
    names of the returned columns (in row order)."""

    rows: list[Any]
    rowcount: int
    keys: tuple[str, ...] = ()

    def mappings(self) -> list[dict[str, Any]]:
        """The rows as column-name -> value dicts."""
        return [dict(zip(self.keys, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind parameter names in positional order
    processors: Mapping[str, Any]
    constants: Mapping[str, Any]  # values compiled into the statement (a LIMIT, say)
    defaults: Mapping[str, Any]  # key -> callable() or value for columns left out
    result_keys: tuple[str, ...]  # returned columns, in order
    result_processors: tuple[Any, ...] | None  # per returned column; None: none has one

    def processed(self, rows: list[Any]) -> list[Any]:
        if self.result_processors is None:
            return rows
        processors = self.result_processors
        return [
            tuple(
                p(value) if p is not None else value
                for p, value in zip(processors, row, strict=True)
            )
            for row in rows
        ]

    def values(self, row: Params) -> tuple[Any, ...]:
        filled = dict(row)
        for key, default in self.defaults.items():
            if key not in filled:
                filled[key] = default() if callable(default) else default
        out = []
        for name in self.names:
            value = filled[name] if name in filled else self.constants[name]
            processor = self.processors.get(name)
            out.append(processor(value) if processor is not None else value)
        return tuple(out)


class Prepared:
    """One Core statement, run on the DBAPI cursor (see the module's docstring)."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[str, frozenset[str]], _Compiled] = {}

    async def __call__(
        self, session: AsyncSession, params: Params | Sequence[Params] | None = None
    ) -> Outcome:
        """Run in `session`'s transaction (pending ORM changes are flushed first, as
        `session.execute` would)."""
        return await session.run_sync(self.in_session, params)

    def in_session(self, session: Session, params: Params | Sequence[Params] | None) -> Outcome:
        if session.new or session.dirty or session.deleted:
            session.flush()
        return self.run(session.connection(), params)

    def run(self, connection: Connection, params: Params | Sequence[Params] | None) -> Outcome:
        """Run on `connection` (sync; inside SQLAlchemy's greenlet for an async engine).
        A sequence of parameter sets is one `executemany`."""
        rows: list[Params] = (
            [params or {}] if params is None or isinstance(params, Mapping) else list(params)
        )
        if not rows:
            return Outcome([], 0)
        compiled = self._compile(connection.dialect, frozenset(rows[0]))
        values = [compiled.values(row) for row in rows]
        dbapi_connection: Any = connection.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        many = len(values) > 1
        parameters: Any = values if many else values[0]
        # The engine's cursor events fire as for any statement (tracing, fault injection
        # in tests); a listener cannot rewrite the statement here (`retval=True`).
        connection.dispatch.before_cursor_execute(
            connection, cursor, compiled.sql, parameters, None, many
        )
        try:
            if many:
                cursor.executemany(compiled.sql, values)
            else:
                cursor.execute(compiled.sql, values[0])
            found = list(cursor.fetchall()) if cursor.description else []
            connection.dispatch.after_cursor_execute(
                connection, cursor, compiled.sql, parameters, None, many
            )
            return Outcome(compiled.processed(found), cursor.rowcount, compiled.result_keys)
        except connection.dialect.loaded_dbapi.Error as error:
            # Wraps it (IntegrityError...) and invalidates a dropped connection; raises.
            connection._handle_dbapi_exception(error, compiled.sql, values, cursor, None)
            raise  # not reached
        finally:
            # As SQLAlchemy does: a cursor of a connection that just died cannot be closed,
            # and that must not hide why it died.
            with contextlib.suppress(connection.dialect.loaded_dbapi.Error):
                cursor.close()

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
        cached = self._compiled.get((dialect.name, keys))
        if cached is not None:
            return cached
        compiler = self._statement.compile(dialect=dialect, column_keys=sorted(keys))
        assert isinstance(compiler, SQLCompiler)  # noqa: S101 (a Core statement)
        if compiler.positiontup is None:
            raise TypeError(f"{dialect.name}: Prepared needs a positional paramstyle")
        defaults: dict[str, Any] = {}
        for column in (*compiler.insert_prefetch, *compiler.update_prefetch):
            default = column.default if column in compiler.insert_prefetch else column.onupdate
            if default is None or not (default.is_scalar or default.is_callable):
                raise TypeError(f"{column}: only scalar and plain callable defaults")
            arg = getattr(default, "arg", None)
            defaults[column.key] = (lambda fn=arg: fn(None)) if default.is_callable else arg
        # What SQLAlchemy's result would apply to each returned column (the DBAPI type
        # code it may also consult is unknown before execution; none of our types use it).
        returned = compiler._result_columns
        result_processors = tuple(
            entry.type._cached_result_processor(dialect, None) for entry in returned
        )
        built = _Compiled(
            sql=compiler.string,
            names=tuple(compiler.positiontup),
            processors=dict(compiler._bind_processors),
            constants=compiler.construct_params(_check=False),
            defaults=defaults,
            result_keys=tuple(entry.keyname for entry in returned),
            result_processors=(
                result_processors if any(p is not None for p in result_processors) else None
            ),
        )
        self._compiled[(dialect.name, keys)] = built
        return built
