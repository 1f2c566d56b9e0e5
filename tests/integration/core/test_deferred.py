"""`Prepared.defer`: rows written at the commit store exactly what an insert would.

On PostgreSQL the deferred inserts and the audit chain's `audit_append` travel as one
statement (rows as `jsonb`), so what the normal path did must still hold: the same stored
values (JSON, UTC timestamps, Python-side defaults, NULLs), foreign keys between the
deferred rows, a rollback that writes nothing, and a chain that still verifies.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import record_event, verify_chain
from provisioner.delivery.models import Delivery
from provisioner.meetings.models import Invitee, Meeting
from provisioner.prepared import Prepared, write_deferred
from provisioner.state import AppState
from tests.integration.core.test_prepared import meeting_row, stored

INSERT_MEETING = Prepared(insert(Meeting))
INSERT_INVITEE = Prepared(insert(Invitee))
INSERT_DELIVERY = Prepared(insert(Delivery))


def invitee_row(invitee_id: str, meeting_id: str) -> dict[str, Any]:
    return {
        "id": invitee_id,
        "meeting_id": meeting_id,
        "position": 0,
        "email": "ana@example.com",
        "name": 'Ana "Quote" Lima, ünïcode',
        "join_secret": None,  # NULL, and the defaults (personal_link, channel) left out
    }


def delivery_row(delivery_id: str, meeting_id: str, invitee_id: str | None) -> dict[str, Any]:
    return {
        "id": delivery_id,
        "meeting_id": meeting_id,
        "invitee_id": invitee_id,
        "role": "invitee" if invitee_id else "host",
        "channel": "email",
        "recipient_email": "ana@example.com",
        "recipient_name": "Ana",
        "method": "REQUEST",
        "sequence": 0,
    }


class Statements:
    """The statements the engine sends, as its cursor events see them."""

    def __init__(self, state: AppState) -> None:
        self.seen: list[str] = []
        self._engine = state.db.engine.sync_engine

    def __enter__(self) -> list[str]:
        event.listen(self._engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *_: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)


async def test_deferred_rows_match_what_an_insert_stores(state: AppState) -> None:
    async with state.db.session() as session:
        await INSERT_MEETING(session, meeting_row("direct"))
        INSERT_MEETING.defer(session, [meeting_row("deferred")])
    async with state.db.session() as session:
        direct = await session.get(Meeting, "direct")
        deferred = await session.get(Meeting, "deferred")
    assert direct is not None and deferred is not None
    assert stored(deferred) == stored(direct)
    assert deferred.settings == {"waiting_room": True, "nested": {"list": [1, 2]}}
    assert deferred.starts_at.tzinfo is not None and deferred.created_at.tzinfo is not None


async def test_written_at_commit_with_the_audit_events_in_one_statement(
    state: AppState,
) -> None:
    """Invitees and the deliveries that refer to them, deferred in that order, then the
    audit events: on PostgreSQL one statement at the commit, elsewhere one each."""
    async with state.db.session() as session:
        await INSERT_MEETING(session, meeting_row("m"))
    with Statements(state) as seen:
        async with state.db.session() as session:
            INSERT_INVITEE.defer(session, [invitee_row("i", "m")])
            INSERT_DELIVERY.defer(
                session, [delivery_row("d-host", "m", None), delivery_row("d-ana", "m", "i")]
            )
            # Not written yet: later statements in the transaction do not see them.
            assert await session.scalar(select(Invitee.id)) is None
            await record_event(session, actor="a", action="x", target_type="meeting", target_id="m")
    writes = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "WITH", "SELECT"))]
    if state.db.engine.dialect.name == "postgresql":
        (merged,) = [s for s in writes if "INSERT INTO invitees" in s]
        assert "INSERT INTO deliveries" in merged and "audit_append" in merged
        assert merged.index("INSERT INTO invitees") < merged.index("INSERT INTO deliveries")
    else:
        assert [s.split()[2] for s in writes if s.startswith("INSERT")][:2] == [
            "invitees",
            "deliveries",
        ]
    async with state.db.session() as session:
        invitee = await session.get(Invitee, "i")
        deliveries = (await session.scalars(select(Delivery).order_by(Delivery.id))).all()
        events = (await session.scalars(select(AuditEvent))).all()
        report = await verify_chain(session)
    assert invitee is not None
    assert (invitee.name, invitee.personal_link, invitee.channel, invitee.join_secret) == (
        'Ana "Quote" Lima, ünïcode',
        False,
        "email",
        None,
    )
    assert [(d.id, d.invitee_id, d.status, d.attempts) for d in deliveries] == [
        ("d-ana", "i", "pending", 0),
        ("d-host", None, "pending", 0),
    ]
    assert deliveries[0].next_attempt_at.tzinfo is not None and deliveries[0].notice is None
    assert [e.action for e in events] == ["x"] and report.ok


async def test_the_last_statement_runs_after_the_deferred_rows(state: AppState) -> None:
    """`last` (on PostgreSQL the audit chain's lock and append) runs once every deferred row
    is written: its locks come after theirs, in the merged statement too. On PostgreSQL the
    probe is a VOLATILE function, as `audit_append` is: its queries see what the statement
    wrote before it ran (a plain subquery would read the statement's own snapshot)."""
    postgres = state.db.engine.dialect.name == "postgresql"
    async with state.db.session() as session:
        await INSERT_MEETING(session, meeting_row("m"))
    async with state.db.session() as session:
        if postgres:
            await session.execute(
                text(
                    "CREATE FUNCTION pg_temp.invitees_seen() RETURNS bigint LANGUAGE plpgsql "
                    "VOLATILE AS $$ BEGIN RETURN (SELECT count(*) FROM invitees); END $$"
                )
            )
            probe = Prepared(select(func.pg_temp.invitees_seen()))
        else:
            probe = Prepared(select(func.count()).select_from(Invitee))
        INSERT_INVITEE.defer(session, [invitee_row("i1", "m")])
        INSERT_INVITEE.defer(
            session, [invitee_row("i2", "m") | {"position": 1, "email": "ben@example.com"}]
        )
        outcome = await session.run_sync(lambda sync: write_deferred(sync, last=(probe, {})))
    assert outcome is not None and [tuple(row) for row in outcome.rows] == [(2,)]


async def test_without_audit_events_they_are_still_written(state: AppState) -> None:
    async with state.db.session() as session:
        INSERT_MEETING.defer(session, [meeting_row("a"), meeting_row("b")])
    async with state.db.session() as session:
        ids = (await session.scalars(select(Meeting.id).order_by(Meeting.id))).all()
    assert ids == ["a", "b"]


async def test_a_rollback_writes_nothing_and_forgets_them(state: AppState) -> None:
    with pytest.raises(RuntimeError):
        async with state.db.session() as session:
            INSERT_MEETING.defer(session, [meeting_row("gone")])
            raise RuntimeError("the request failed")
    async with state.db.session() as session:
        assert await session.get(Meeting, "gone") is None
        await record_event(session, actor="a", action="y", target_type="meeting", target_id="x")
    async with state.db.session() as session:
        assert await session.get(Meeting, "gone") is None


async def test_a_failing_deferred_insert_fails_the_commit(state: AppState) -> None:
    async with state.db.session() as session:
        await INSERT_MEETING(session, meeting_row("taken"))
    with pytest.raises(IntegrityError):
        async with state.db.session() as session:
            INSERT_MEETING.defer(session, [meeting_row("taken")])
            await record_event(session, actor="a", action="z", target_type="meeting", target_id="t")
    async with state.db.session() as session:
        actions = (await session.scalars(select(AuditEvent.action))).all()
    assert "z" not in actions  # the events went down with the rows


def test_only_plain_inserts_can_be_deferred() -> None:
    with pytest.raises(TypeError):
        Prepared(update(Meeting)).defer(None, [{}])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Prepared(insert(Meeting).returning(Meeting.id)).defer(None, [{}])  # type: ignore[arg-type]
