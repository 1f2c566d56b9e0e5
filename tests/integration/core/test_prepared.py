"""`Prepared` statements store exactly what SQLAlchemy would, on SQLite and PostgreSQL.

They skip SQLAlchemy's execution machinery for the few statements every create runs, so
what that machinery did must still happen: bind processing (JSON, UTC timestamps),
Python-side defaults and `onupdate` values, wrapped errors, and the engine's cursor events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from provisioner.db import utcnow
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.prepared import Prepared, with_defaults
from provisioner.state import AppState

START = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)


def meeting_row(meeting_id: str) -> dict[str, Any]:
    """A meeting as a create inserts it: several columns left to their defaults."""
    return {
        "id": meeting_id,
        "host_subject": "dana",
        "host_email": "dana@example.com",
        "host_name": "Dana",
        "topic": "Planning",
        "provider": "zoom",
        "state": MeetingState.PROVISIONING,
        "starts_at": START,
        "ends_at": START,
        "timezone": "Europe/Berlin",
        "settings": {"waiting_room": True, "nested": {"list": [1, 2]}},
        "ics_uid": f"{meeting_id}@p",
    }


def stored(meeting: Meeting) -> dict[str, Any]:
    skip = {"id", "ics_uid", "created_at", "updated_at"}
    return {c.key: getattr(meeting, c.key) for c in Meeting.__table__.columns if c.key not in skip}


async def test_rows_match_what_sqlalchemy_stores(state: AppState) -> None:
    before = utcnow()
    async with state.db.session() as session:
        await session.execute(insert(Meeting), meeting_row("by-sqlalchemy"))
        await Prepared(insert(Meeting))(session, meeting_row("prepared"))
    async with state.db.session() as session:
        ours = await session.get(Meeting, "prepared")
        theirs = await session.get(Meeting, "by-sqlalchemy")
    assert ours is not None and theirs is not None
    assert stored(ours) == stored(theirs)
    assert ours.settings == {"waiting_room": True, "nested": {"list": [1, 2]}}
    assert ours.starts_at == START and ours.starts_at.tzinfo is not None
    assert (ours.enforced, ours.sequence, ours.orphan_check_pending) == ([], 0, False)
    assert ours.created_at >= before and ours.updated_at >= before  # callable defaults


async def test_many_rows_returning_rowcount_and_onupdate(state: AppState) -> None:
    ids = [f"m{i}" for i in range(3)]
    async with state.db.session() as session:
        await Prepared(insert(Meeting))(session, [meeting_row(i) for i in ids])
        touched_before = utcnow()
        renamed = await Prepared(
            update(Meeting)
            .where(Meeting.provider == bindparam("which"))
            .values(topic=bindparam("new_topic"))
        )(session, {"which": "zoom", "new_topic": "Renamed"})
        found = await Prepared(select(Meeting.id).order_by(Meeting.id).limit(2))(session)
    assert renamed.rowcount == 3
    assert [row[0] for row in found.rows] == ["m0", "m1"]
    async with state.db.session() as session:
        rows = (await session.scalars(select(Meeting))).all()
    assert {(m.topic, m.updated_at >= touched_before) for m in rows} == {("Renamed", True)}


async def test_returned_rows_are_processed_as_sqlalchemy_processes_them(state: AppState) -> None:
    """RETURNING rows come back typed (JSON decoded, aware timestamps, enums as stored),
    equal to the row SQLAlchemy's own result gives for the same statement."""
    statement = (
        update(Meeting)
        .where(Meeting.id == bindparam("meeting_id"))
        .values(reference=bindparam("new_reference", type_=Meeting.__table__.c.reference.type))
        .returning(*Meeting.__table__.c)
    )
    async with state.db.session() as session:
        await Prepared(insert(Meeting))(session, [meeting_row("ours"), meeting_row("theirs")])
        ours = await Prepared(statement)(session, {"meeting_id": "ours", "new_reference": {"a": 1}})
        theirs = (
            await session.execute(statement, {"meeting_id": "theirs", "new_reference": {"a": 1}})
        ).one()
    (mine,) = ours.mappings()
    expected = dict(theirs._mapping)
    assert ours.keys == tuple(expected)
    skip = {"id", "ics_uid", "created_at", "updated_at"}
    assert {k: v for k, v in mine.items() if k not in skip} == {
        k: v for k, v in expected.items() if k not in skip
    }
    assert mine["reference"] == {"a": 1} and mine["settings"]["nested"] == {"list": [1, 2]}
    assert mine["starts_at"] == START and mine["starts_at"].tzinfo is not None
    assert mine["updated_at"].tzinfo is not None and mine["updated_at"] >= mine["created_at"]
    assert Meeting(**mine).state == MeetingState.PROVISIONING


async def test_errors_arrive_wrapped_and_the_transaction_rolls_back(state: AppState) -> None:
    prepared = Prepared(insert(Meeting))
    with pytest.raises(IntegrityError):
        async with state.db.session() as session:
            await prepared(session, meeting_row("twice"))
            await prepared(session, meeting_row("twice"))
    async with state.db.session() as session:
        assert await session.get(Meeting, "twice") is None


async def test_database_errors_do_not_carry_the_parameters(state: AppState) -> None:
    """The error text is logged with the traceback of a 500: the statement, not the values
    (an email here; sealed join details or a response body elsewhere)."""
    row = meeting_row("twice") | {"host_email": "secret-host@example.com"}
    for run in (
        lambda session: Prepared(insert(Meeting))(session, row),
        lambda session: session.execute(insert(Meeting), row),
    ):
        with pytest.raises(IntegrityError) as caught:
            async with state.db.session() as session:
                await Prepared(insert(Meeting))(session, meeting_row("twice"))
                await run(session)
        assert "secret-host@example.com" not in str(caught.value)
        assert "hidden due to hide_parameters" in str(caught.value)


async def test_cursor_events_fire(state: AppState) -> None:
    seen: list[tuple[str, bool]] = []

    def before(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, many: bool
    ) -> None:
        seen.append((statement.split()[0], many))

    event.listen(state.db.engine.sync_engine, "before_cursor_execute", before)
    try:
        async with state.db.session() as session:
            await Prepared(insert(Meeting))(session, [meeting_row("a"), meeting_row("b")])
    finally:
        event.remove(state.db.engine.sync_engine, "before_cursor_execute", before)
    assert ("INSERT", True) in seen


async def test_with_defaults_is_the_row_the_insert_stores(state: AppState) -> None:
    """What `store_verified` relies on to build its response without a read-back: the
    columns a create leaves out come back as their defaults filled them."""
    partial = meeting_row("kept") | {"created_at": START, "updated_at": START}  # not a clock
    row = with_defaults(Meeting.__table__, partial)  # type: ignore[arg-type]
    assert set(row) == {c.key for c in Meeting.__table__.columns}
    async with state.db.session() as session:
        await Prepared(insert(Meeting))(session, partial)
    async with state.db.session() as session:
        back = await session.get(Meeting, "kept")
    assert back is not None
    assert {c.key: getattr(back, c.key) for c in Meeting.__table__.columns} == row


def test_with_defaults_refuses_to_guess_a_sql_default() -> None:
    table = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("n", Integer, server_default="0"),
    )
    with pytest.raises(TypeError, match="t.n"):
        with_defaults(table, {"id": 1})
    assert with_defaults(table, {"id": 1, "n": 5}) == {"id": 1, "n": 5}
