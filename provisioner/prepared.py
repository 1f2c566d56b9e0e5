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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Delete,
    Dialect,
    Insert,
    Table,
    TypeDecorator,
    Update,
    event,
    literal_column,
)
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


class Later:
    """What a deferred statement (`Prepared.defer_statement`) returned, known once its
    transaction has committed."""

    __slots__ = ("_outcome",)

    def __init__(self) -> None:
        self._outcome: Outcome | None = None

    @property
    def outcome(self) -> Outcome:
        if self._outcome is None:
            raise LookupError("the deferred statement has not been written (no commit yet)")
        return self._outcome


class DeferredMismatch(LookupError):  # noqa: N818 (a LookupError, named for what happened)
    """A deferred statement changed another number of rows than it expected: the commit
    failed, and the transaction was rolled back."""

    def __init__(self, later: Later, table: str, *, expected: int, changed: int) -> None:
        super().__init__(f"{table}: the deferred statement changed {changed} rows, not {expected}")
        self.later = later
        self.expected = expected
        self.changed = changed


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
        self._counted: Prepared | None = None  # the same with RETURNING 1 (`_returning`)

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
            session.sync_session.info.setdefault(_DEFERRED, []).append(_Queued(self, list(rows)))

    def defer_statement(
        self, session: AsyncSession, params: Params, *, expect: int | None = None
    ) -> Later:
        """Queue this statement (one parameter set) to run when `session`'s transaction
        commits, in the same statement as the deferred inserts and `audit_append` on
        PostgreSQL (`defer` says why and what that asks of the rows).

        For an UPDATE, DELETE or INSERT whose outcome nobody needs before the commit (an
        idempotency key's claim or completion). It may return one column (its values
        come back unprocessed: an id, say). `expect`: the rows it must change; any other
        count fails the commit with `DeferredMismatch` (the transaction rolls back).
        On PostgreSQL it runs in the same snapshot as the other deferred statements: it
        must not depend on their rows (only on rows written before).
        """
        if not isinstance(self._statement, Insert | Update | Delete):
            raise TypeError("only an INSERT, UPDATE or DELETE can be deferred")
        dialect = session.sync_session.get_bind().dialect
        compiled = self._returning()._compile(dialect, frozenset(params))
        if len(compiled.result_keys) > 1 or compiled.result_processors is not None:
            raise TypeError("a deferred statement returns at most one unprocessed column")
        later = Later()
        session.sync_session.info.setdefault(_DEFERRED, []).append(
            _Queued(self, [params], later, expect)
        )
        return later

    def _returning(self) -> Prepared:
        """This statement, or (without RETURNING) the same with `RETURNING 1`: a CTE's
        rows are counted from what it returns."""
        statement = self._statement
        assert isinstance(statement, Insert | Update | Delete)  # noqa: S101 (checked)
        if statement._returning:
            return self
        if self._counted is None:
            self._counted = Prepared(statement.returning(literal_column("1")))
        return self._counted

    @property
    def _inserted(self) -> Table | None:
        """The table this statement inserts into, if it is a plain INSERT."""
        statement = self._statement
        if isinstance(statement, Insert) and not statement._returning:
            table = statement.table
            return table if isinstance(table, Table) else None
        return None

    @property
    def _returns(self) -> bool:
        """Whether this statement has a RETURNING clause of its own."""
        return bool(getattr(self._statement, "_returning", ()))

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


@dataclass(frozen=True)
class _Queued:
    """One deferred write: `rows` of a plain INSERT (`later` None), or one statement."""

    statement: Prepared
    rows: list[Params]
    later: Later | None = None
    expect: int | None = None

    def settle(self, outcome: Outcome) -> None:
        """Hand the statement's outcome to its `Later`; a count it did not expect fails."""
        assert self.later is not None  # noqa: S101 (statements only)
        self.later._outcome = outcome
        if self.expect is not None and outcome.rowcount != self.expect:
            table = getattr(self.statement._statement, "table", None)
            raise DeferredMismatch(
                self.later,
                getattr(table, "name", "?"),
                expected=self.expect,
                changed=outcome.rowcount,
            )


def write_deferred(
    session: Session, *, last: tuple[Prepared, Params] | None = None
) -> Outcome | None:
    """Write what `Prepared.defer` and `defer_statement` queued in `session`'s
    transaction, in order, then run `last` (a SELECT of one value, if given) and return
    what it returned.

    With asyncpg that is one statement: each queued INSERT becomes a data-modifying CTE
    reading its rows from one `json` parameter, each queued statement a CTE of its own,
    and `last` is a subquery correlated with the CTEs' row counts, so it runs only once
    every row is written (their foreign keys are checked at the statement's end, see
    `Prepared.defer`). A statement that changed another number of rows than it expected
    raises `DeferredMismatch`.
    """
    queued: list[_Queued] = session.info.pop(_DEFERRED, [])
    connection = session.connection()
    if queued and connection.dialect.paramstyle == "numeric_dollar":
        return _merged(connection, queued, last)
    for item in queued:
        if item.later is None:
            item.statement.run(connection, item.rows)
            continue
        outcome = item.statement.run(connection, item.rows[0])
        if outcome.keys:  # RETURNING: count what came back (sqlite3's rowcount may not)
            outcome = Outcome(outcome.rows, len(outcome.rows), outcome.keys)
        item.settle(outcome)
    return last[0].run(connection, last[1]) if last is not None else None


def _merged(
    connection: Connection, queued: list[_Queued], last: tuple[Prepared, Params] | None
) -> Outcome | None:
    dialect = connection.dialect
    final = last[0]._compile(dialect, frozenset(last[1])) if last is not None else None
    values: list[Any] = list(final.values(last[1])) if final and last else []
    parts: list[_Part] = []
    statements: list[tuple[_Queued, _Compiled]] = []
    for item in queued:
        if item.later is None:
            table = _table(item.statement)
            values.append(json.dumps([_json_row(table, row, dialect) for row in item.rows]))
            parts.append(table)
        else:
            compiled = item.statement._returning()._compile(dialect, frozenset(item.rows[0]))
            parts.append((compiled.sql, len(compiled.names), item.statement._returns))
            values.extend(compiled.values(item.rows[0]))
            statements.append((item, compiled))
    key = (tuple(parts), final.sql if final else None)
    sql = _MERGED.get(key)
    if sql is None:
        sql = _MERGED[key] = _merged_sql(dialect, parts, len(final.names) if final else 0, final)
    keys, processors = (final.result_keys, final.result_processors) if final else (("_",), None)
    extra = ("rows", "vals") * len(statements)
    compiled = _Compiled(
        sql,
        (),
        {},
        {},
        {},
        (*keys, *extra),
        (*processors, *(None,) * len(extra)) if processors else None,
    )
    outcome = _execute(connection, compiled, tuple(values), many=False)
    (row,) = outcome.rows
    for index, (item, own) in enumerate(statements):
        rows, returned = row[1 + 2 * index], row[2 + 2 * index]
        item.settle(
            Outcome([(value,) for value in returned or ()], rows, own.result_keys)
            if item.statement._returns
            else Outcome([], rows)
        )
    return Outcome([row[:1]], 1, keys) if final is not None else None


# A plain INSERT's table, or a statement's SQL, number of parameters and whether it
# returns a column of its own.
_Part = Table | tuple[str, int, bool]
_MERGED: dict[tuple[tuple[_Part, ...], str | None], str] = {}
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _merged_sql(dialect: Dialect, parts: list[_Part], taken: int, final: _Compiled | None) -> str:
    """`WITH d0 AS (INSERT ... RETURNING 1), d1 AS (UPDATE ... RETURNING 1) ... SELECT
    (SELECT * FROM (final) AS f WHERE n0.rows >= 0 ...), n1.rows, n1.vals FROM (SELECT
    count(*) AS rows FROM d0) AS n0, ...`: `final` depends on every count, so it cannot
    run before the writes. `json`, not `jsonb`: JSON columns keep the text a normal insert
    stores (key order, number spelling). A statement's placeholders are renumbered after
    the ones before it (`taken`: `final`'s own). Identifiers come from our table metadata,
    quoted by the dialect; values are bound."""
    quote = dialect.identifier_preparer.quote
    ctes, counts, after, extra = [], [], [], []
    for index, part in enumerate(parts):
        if isinstance(part, Table):
            taken += 1
            columns = ", ".join(quote(column.name) for column in part.columns)
            name = quote(part.name)
            ctes.append(
                f"d{index} AS (INSERT INTO {name} ({columns}) SELECT {columns} "  # noqa: S608
                f"FROM json_populate_recordset(NULL::{name}, ${taken}::json) RETURNING 1)"
            )
            counts.append(f"(SELECT count(*) AS rows FROM d{index}) AS n{index}")  # noqa: S608
        else:
            sql, parameters, returns = part
            ctes.append(f"d{index} AS ({_renumbered(sql, taken)})")
            taken += parameters
            counts.append(
                f"(SELECT count(*) AS rows, "  # noqa: S608
                f"{'array_agg(r.v)' if returns else 'NULL'} AS vals "
                f"FROM d{index} AS r(v)) AS n{index}"
            )
            extra.append(f"n{index}.rows, n{index}.vals")
        after.append(f"n{index}.rows >= 0")
    selected = (
        f"(SELECT * FROM ({final.sql}) AS f WHERE {' AND '.join(after)})"  # noqa: S608
        if final is not None
        else "1"
    )
    columns = ", ".join((selected, *extra))
    return f"WITH {', '.join(ctes)} SELECT {columns} FROM {', '.join(counts)}"  # noqa: S608


def _renumbered(sql: str, offset: int) -> str:
    """`sql`'s placeholders ($1, $2...) moved up by `offset`. Our compiled SQL has no
    literals (every value is bound), so a `$` followed by digits is a placeholder."""
    return _PLACEHOLDER.sub(lambda match: f"${int(match[1]) + offset}", sql)


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


def with_defaults(table: Table, row: Params) -> dict[str, Any]:
    """`row` with every column of `table`: those it leaves out get their Python-side
    default as SQLAlchemy's insert would fill it (None where there is none). What the
    insert stores, so a caller can keep the row instead of reading it back.

    Raises:
        TypeError: a left-out column has a SQL-side default (its value is the server's).
    """
    out = dict(row)
    for column in table.columns:
        if column.key in out:
            continue
        default = column.default
        if default is not None and default.is_callable:
            out[column.key] = default.arg(None)  # type: ignore[attr-defined]
        elif default is not None and default.is_scalar:
            out[column.key] = default.arg  # type: ignore[attr-defined]
        elif default is not None or column.server_default is not None:
            raise TypeError(f"{column}: the row cannot leave out a SQL default")
        else:
            out[column.key] = None
    return out


def _json_row(table: Table, row: Params, dialect: Dialect) -> dict[str, Any]:
    """One row as `json_populate_recordset` reads it: every column (`with_defaults`),
    values in PostgreSQL's text forms (JSON columns nested)."""
    full = with_defaults(table, row)
    out: dict[str, Any] = {}
    for column in table.columns:
        value = full[column.key]
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
