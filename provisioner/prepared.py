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
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Connection, Dialect, Insert, Table, TypeDecorator, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
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
        if len(values) > 1:
            return _execute(connection, compiled, values, many=True)
        return _execute(connection, compiled, values[0], many=False)

    def defer(self, session: AsyncSession, rows: Sequence[Params]) -> None:
        """Queue this INSERT's `rows` to be written when `session`'s transaction commits.

        On PostgreSQL (asyncpg) the queued inserts then travel in one statement together
        with the commit's last one -- the audit chain's `audit_append` -- instead of one
        round trip each: every round trip costs a create about 0.25 ms of latency and
        0.12 ms of our CPU (README, Performance). Elsewhere each is one `executemany` at the
        commit.
        Only for rows nothing reads or refers to before the commit: statements later in
        the transaction do not see them, and they are written after its ORM changes (and
        not in a savepoint: they belong to the whole transaction, as audit events do).
        PostgreSQL checks the foreign keys of the merged statement's rows at its end, after
        `audit_append` took the chain lock: defer only rows whose parent rows this
        transaction wrote or holds locked already, so those checks never wait.
        """
        table = self._inserted
        if table is None:
            raise TypeError("only an INSERT without RETURNING can be deferred")
        for row in rows:
            _check_deferrable(table, row)
        if rows:
            session.sync_session.info.setdefault(_DEFERRED, []).append((self, list(rows)))

    @property
    def _inserted(self) -> Table | None:
        """The table this statement inserts into, if it is a plain INSERT."""
        statement = self._statement
        if isinstance(statement, Insert) and not statement._returning:
            table = statement.table
            return table if isinstance(table, Table) else None
        return None

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


def _execute(
    connection: Connection, compiled: _Compiled, parameters: Any, *, many: bool
) -> Outcome:
    """Run compiled SQL on the DBAPI cursor of `connection`, as SQLAlchemy would run it."""
    dbapi_connection: Any = connection.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    # The engine's cursor events fire as for any statement (tracing, fault injection in
    # tests); a listener cannot rewrite the statement here (`retval=True`).
    connection.dispatch.before_cursor_execute(
        connection, cursor, compiled.sql, parameters, None, many
    )
    try:
        if many:
            cursor.executemany(compiled.sql, parameters)
        else:
            cursor.execute(compiled.sql, parameters)
        found = list(cursor.fetchall()) if cursor.description else []
        connection.dispatch.after_cursor_execute(
            connection, cursor, compiled.sql, parameters, None, many
        )
        return Outcome(compiled.processed(found), cursor.rowcount, compiled.result_keys)
    except connection.dialect.loaded_dbapi.Error as error:
        # Wraps it (IntegrityError...) and invalidates a dropped connection; raises.
        connection._handle_dbapi_exception(error, compiled.sql, parameters, cursor, None)
        raise  # not reached
    finally:
        # As SQLAlchemy does: a cursor of a connection that just died cannot be closed,
        # and that must not hide why it died.
        with contextlib.suppress(connection.dialect.loaded_dbapi.Error):
            cursor.close()


_DEFERRED = "provisioner.prepared.deferred"
Deferred = list[tuple[Prepared, list[Params]]]


def write_deferred(
    session: Session, *, last: tuple[Prepared, Params] | None = None
) -> Outcome | None:
    """Write the rows `Prepared.defer` queued in `session`'s transaction, then run `last`
    (a SELECT of one value, if given) and return what it returned.

    With asyncpg that is one statement: each queued INSERT becomes a data-modifying CTE
    reading its rows from one `json` parameter, and `last` is a subquery correlated with
    the CTEs' row counts, so it runs only once every row is inserted (their foreign keys
    are checked at the statement's end, see `Prepared.defer`).
    """
    deferred: Deferred = session.info.pop(_DEFERRED, [])
    connection = session.connection()
    if deferred and connection.dialect.paramstyle == "numeric_dollar":
        return _merged(connection, deferred, last)
    for statement, rows in deferred:
        statement.run(connection, rows)
    return last[0].run(connection, last[1]) if last is not None else None


def _merged(
    connection: Connection, deferred: Deferred, last: tuple[Prepared, Params] | None
) -> Outcome | None:
    dialect = connection.dialect
    final = last[0]._compile(dialect, frozenset(last[1])) if last is not None else None
    values: list[Any] = list(final.values(last[1])) if final and last else []
    first = len(values) + 1  # the rows' json parameters follow `last`'s own
    tables = tuple(_table(statement) for statement, _ in deferred)
    values += [
        json.dumps([_json_row(table, row, dialect) for row in rows])
        for table, (_, rows) in zip(tables, deferred, strict=True)
    ]
    key = (tables, final.sql if final else None)
    sql = _MERGED.get(key)
    if sql is None:
        sql = _MERGED[key] = _merged_sql(dialect, tables, first, final)
    keys, processors = (final.result_keys, final.result_processors) if final else ((), None)
    compiled = _Compiled(sql, (), {}, {}, {}, keys, processors)
    outcome = _execute(connection, compiled, tuple(values), many=False)
    return outcome if final is not None else None


_MERGED: dict[tuple[tuple[Table, ...], str | None], str] = {}


def _merged_sql(
    dialect: Dialect, tables: tuple[Table, ...], first: int, final: _Compiled | None
) -> str:
    """`WITH d0 AS (INSERT ... RETURNING 1), ... SELECT (SELECT * FROM (final) AS f WHERE
    n0.rows >= 0 ...) FROM (SELECT count(*) AS rows FROM d0) AS n0, ...`: `final` depends on
    every count, so it cannot run before the inserts. `json`, not `jsonb`: JSON columns keep
    the text a normal insert stores (key order, number spelling). Identifiers come from our
    table metadata, quoted by the dialect; values are bound."""
    quote = dialect.identifier_preparer.quote
    ctes, counts, after = [], [], []
    for index, table in enumerate(tables):
        columns = ", ".join(quote(column.name) for column in table.columns)
        name = quote(table.name)
        ctes.append(
            f"d{index} AS (INSERT INTO {name} ({columns}) SELECT {columns} "  # noqa: S608
            f"FROM json_populate_recordset(NULL::{name}, ${first + index}::json) RETURNING 1)"
        )
        counts.append(f"(SELECT count(*) AS rows FROM d{index}) AS n{index}")  # noqa: S608
        after.append(f"n{index}.rows >= 0")
    selected = (
        f"(SELECT * FROM ({final.sql}) AS f WHERE {' AND '.join(after)})"  # noqa: S608
        if final is not None
        else "1"
    )
    return f"WITH {', '.join(ctes)} SELECT {selected} FROM {', '.join(counts)}"  # noqa: S608


def _table(statement: Prepared) -> Table:
    table = statement._inserted
    assert table is not None  # noqa: S101 (`defer` checked it)
    return table


def _check_deferrable(table: Table, row: Params) -> None:
    """Refuse what the merged statement would store differently from an insert: an
    unknown key (an insert fails to compile), None in a JSON column (an insert stores JSON
    null, the recordset SQL NULL)."""
    unknown = set(row) - set(table.columns.keys())
    if unknown:
        raise TypeError(f"{table.name}: no such columns: {', '.join(sorted(unknown))}")
    for key, value in row.items():
        column_type = table.columns[key].type
        if value is None and isinstance(column_type, JSON) and not column_type.none_as_null:
            raise TypeError(f"{table.name}.{key}: None in a JSON column cannot be deferred")


def _json_row(table: Table, row: Params, dialect: Dialect) -> dict[str, Any]:
    """One row as `json_populate_recordset` reads it: every column, Python-side defaults
    filled in as SQLAlchemy would, values in PostgreSQL's text forms (JSON columns nested)."""
    out: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.key in row:
            value = row[column.key]
        elif default is not None and default.is_callable:
            value = default.arg(None)  # type: ignore[attr-defined]
        elif default is not None and default.is_scalar:
            value = default.arg  # type: ignore[attr-defined]
        elif default is not None or column.server_default is not None:
            raise TypeError(f"{column}: a deferred insert cannot leave out a SQL default")
        else:
            value = None
        column_type = column.type
        if isinstance(column_type, TypeDecorator):
            value = column_type.process_bind_param(value, dialect)
        if isinstance(value, (datetime, date)):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = "\\x" + value.hex()
        out[column.name] = value
    return out


def _write_on_commit(session: Session) -> None:
    """What is still queued when nothing else took it (the audit chain's own commit hook
    runs first and takes it along with `audit_append`). Not when a savepoint is released:
    the rows belong to the whole transaction."""
    if session.info.get(_DEFERRED) and not session.in_nested_transaction():
        session.flush()
        write_deferred(session)


def _forget(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that ended without writing its rows (rolled back) drops them, so the
    session's next transaction does not write them. A savepoint's end is not the end."""
    if transaction.parent is None:
        session.info.pop(_DEFERRED, None)


event.listen(Session, "before_commit", _write_on_commit)
event.listen(Session, "after_transaction_end", _forget)
