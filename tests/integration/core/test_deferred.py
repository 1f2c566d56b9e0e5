"""`Prepared.defer`: rows written at the commit store exactly what an insert would.

On PostgreSQL the deferred inserts and the audit chain's `audit_append` travel as one
statement (one `json` parameter of rows per table), so what the normal path did must still
hold: the same stored values (JSON, UTC timestamps, Python-side defaults, NULLs), foreign
keys between the deferred rows, a rollback that writes nothing, and a chain that still
verifies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import String, bindparam, event, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import record_event, verify_chain
from provisioner.db import UTCDateTime, utcnow
from provisioner.delivery.models import Delivery
from provisioner.idempotency.models import IdempotencyKey
from provisioner.meetings.models import Invitee, Meeting
from provisioner.prepared import DeferredMismatch, Later, Prepared, write_deferred
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
    async with state.db.session() as session:
        texts = (await session.execute(text("SELECT id, settings FROM meetings ORDER BY id"))).all()
    # The stored JSON text itself: key order and number spelling as an insert writes them.
    assert [settings for _, settings in texts] == [texts[0][1]] * 2
    assert str(texts[0][1]).index("waiting_room") < str(texts[0][1]).index("nested")


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
    """The same session, after a rollback, commits again: the dropped rows stay dropped."""
    async with state.db.sessions() as session:
        await session.execute(text("SELECT 1"))  # a transaction under way
        INSERT_MEETING.defer(session, [meeting_row("gone")])
        await record_event(session, actor="a", action="lost", target_type="meeting", target_id="g")
        await session.rollback()
        INSERT_MEETING.defer(session, [meeting_row("kept")])
        await record_event(session, actor="a", action="kept", target_type="meeting", target_id="k")
        await session.commit()
    async with state.db.session() as session:
        ids = (await session.scalars(select(Meeting.id))).all()
        actions = (await session.scalars(select(AuditEvent.action))).all()
    assert (ids, actions) == (["kept"], ["kept"])


async def test_a_savepoint_neither_writes_nor_drops_them(state: AppState) -> None:
    """Released or rolled back, a savepoint is not the end of the transaction: the rows and
    events are written once, at the real commit."""
    async with state.db.session() as session:
        INSERT_MEETING.defer(session, [meeting_row("outer")])
        await record_event(session, actor="a", action="outer", target_type="meeting", target_id="o")
        async with session.begin_nested():
            pass  # released
        nested = await session.begin_nested()
        await nested.rollback()
        assert await session.get(Meeting, "outer") is None  # not yet written
    async with state.db.session() as session:
        assert await session.get(Meeting, "outer") is not None
        assert (await session.scalars(select(AuditEvent.action))).all() == ["outer"]


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


async def test_rows_it_cannot_store_faithfully_are_refused(state: AppState) -> None:
    """An unknown column, or None in a JSON column (an insert stores JSON null, the
    recordset SQL NULL): refused when deferred, nothing written."""
    for row in (meeting_row("x") | {"colour": "red"}, meeting_row("y") | {"settings": None}):
        with pytest.raises(TypeError):
            async with state.db.session() as session:
                INSERT_MEETING.defer(session, [row])
                await record_event(session, actor="a", action="b", target_type="c", target_id="d")
    async with state.db.session() as session:
        assert (await session.scalars(select(Meeting.id))).all() == []


def test_only_plain_inserts_can_be_deferred() -> None:
    with pytest.raises(TypeError):
        Prepared(update(Meeting)).defer(None, [{}])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Prepared(insert(Meeting).returning(Meeting.id)).defer(None, [{}])  # type: ignore[arg-type]


# `defer_statement`: one statement (an UPDATE, or an INSERT returning its id) written at the
# commit, on PostgreSQL inside the merged statement, its placeholders renumbered after the
# others'.
RENAME = Prepared(
    update(Meeting)
    .where(Meeting.id == bindparam("meeting_id"), Meeting.state == bindparam("expected_state"))
    .values(topic=bindparam("new_topic"), timezone=bindparam("new_timezone"))
)
CLAIM_NAME = Prepared(
    insert(IdempotencyKey)
    .from_select(  # placeholders inside a subquery: renumbered too
        ["scope", "key", "request_hash", "state", "created_at", "expires_at"],
        select(
            bindparam("scope", type_=String),
            bindparam("key", type_=String),
            bindparam("hash", type_=String),
            bindparam("state", type_=String),
            bindparam("at", type_=UTCDateTime),
            bindparam("until", type_=UTCDateTime),
        ),
    )
    .returning(IdempotencyKey.id)
)


def claim_params(key: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "scope": "s",
        "key": key,
        "hash": "h",
        "state": "in_flight",
        "at": now,
        "until": now + timedelta(hours=1),
    }


async def test_deferred_statements_run_at_the_commit_with_the_rows_and_events(
    state: AppState,
) -> None:
    """Two statements with several parameters each, between deferred rows and before the
    audit events: every value lands in its own column, each `Later` holds its outcome,
    and on PostgreSQL it all went in one statement."""
    async with state.db.session() as session:
        await INSERT_MEETING(session, meeting_row("m"))
    with Statements(state) as seen:
        async with state.db.session() as session:
            INSERT_INVITEE.defer(session, [invitee_row("i", "m")])
            renamed = RENAME.defer_statement(
                session,
                {
                    "meeting_id": "m",
                    "expected_state": "provisioning",
                    "new_topic": "Renamed",
                    "new_timezone": "Asia/Tokyo",
                },
                expect=1,
            )
            claimed = CLAIM_NAME.defer_statement(session, claim_params("k1"), expect=1)
            INSERT_DELIVERY.defer(session, [delivery_row("d", "m", "i")])
            with pytest.raises(LookupError):
                _ = renamed.outcome  # not before the commit
            await record_event(session, actor="a", action="x", target_type="meeting", target_id="m")
    if state.db.engine.dialect.name == "postgresql":
        (merged,) = [s for s in seen if "audit_append" in s]
        assert "UPDATE meetings" in merged and "INSERT INTO idempotency_keys" in merged
        assert not [s for s in seen if s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert (renamed.outcome.rowcount, renamed.outcome.rows) == (1, [])
    (key_id,) = claimed.outcome.rows[0]
    async with state.db.session() as session:
        meeting = await session.get(Meeting, "m")
        key = await session.get(IdempotencyKey, key_id)
        delivery = await session.get(Delivery, "d")
        report = await verify_chain(session)
    assert meeting is not None and (meeting.topic, meeting.timezone) == ("Renamed", "Asia/Tokyo")
    assert meeting.updated_at >= meeting.created_at  # the onupdate value was filled in
    assert key is not None and (key.scope, key.key, key.request_hash) == ("s", "k1", "h")
    assert key.expires_at > key.created_at and key.expires_at.tzinfo is not None
    assert delivery is not None and delivery.invitee_id == "i" and report.ok


async def test_an_unexpected_count_fails_the_commit_and_writes_nothing(state: AppState) -> None:
    """An UPDATE that found no row (`expect=1`): `DeferredMismatch` names it, and the
    rows, the other statements and the audit events of that transaction are rolled back."""
    async with state.db.session() as session:
        await INSERT_MEETING(session, meeting_row("m"))
    later: Later | None = None
    with pytest.raises(DeferredMismatch) as caught:
        async with state.db.session() as session:
            INSERT_MEETING.defer(session, [meeting_row("new")])
            CLAIM_NAME.defer_statement(session, claim_params("k"), expect=1)
            later = RENAME.defer_statement(
                session,
                {
                    "meeting_id": "m",
                    "expected_state": "failed",  # it is provisioning: no row changes
                    "new_topic": "x",
                    "new_timezone": "UTC",
                },
                expect=1,
            )
            await record_event(session, actor="a", action="y", target_type="meeting", target_id="m")
    assert caught.value.later is later
    assert (caught.value.expected, caught.value.changed) == (1, 0)
    assert "meetings" in str(caught.value)
    async with state.db.session() as session:
        assert (await session.scalars(select(Meeting.id))).all() == ["m"]
        assert (await session.scalars(select(IdempotencyKey.id))).all() == []
        assert (await session.scalars(select(AuditEvent.id))).all() == []


async def test_a_deferred_insert_returns_nothing_on_conflict(state: AppState) -> None:
    """`ON CONFLICT DO NOTHING RETURNING id` without `expect`: no row, no id, the rest of
    the transaction committed."""
    upsert = sqlite_insert if state.db.engine.dialect.name == "sqlite" else postgresql_insert
    statement = Prepared(
        upsert(IdempotencyKey)
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotencyKey.id)
    )
    row = {
        "scope": "s",
        "key": "k",
        "request_hash": "h",
        "state": "in_flight",
        "created_at": utcnow(),
        "expires_at": utcnow(),
    }
    async with state.db.session() as session:
        first = statement.defer_statement(session, row)
    async with state.db.session() as session:
        again = statement.defer_statement(session, row)
        INSERT_MEETING.defer(session, [meeting_row("kept")])
        await record_event(session, actor="a", action="z", target_type="meeting", target_id="k")
    assert first.outcome.rowcount == 1 and len(first.outcome.rows) == 1
    assert (again.outcome.rowcount, again.outcome.rows) == (0, [])
    async with state.db.session() as session:
        assert await session.get(Meeting, "kept") is not None


async def test_only_writes_returning_at_most_one_plain_column_can_be_deferred(
    state: AppState,
) -> None:
    """A SELECT, two returned columns, or one that needs processing (a UTC timestamp made
    aware): refused when deferred, so nothing is queued."""
    with pytest.raises(TypeError):
        Prepared(select(Meeting.id)).defer_statement(None, {})  # type: ignore[arg-type]
    params = {"meeting_id": "m", "expected_state": "provisioning", "new_topic": "t"}
    for returned in ((Meeting.id, Meeting.topic), (Meeting.updated_at,)):
        statement = Prepared(
            update(Meeting)
            .where(
                Meeting.id == bindparam("meeting_id"), Meeting.state == bindparam("expected_state")
            )
            .values(topic=bindparam("new_topic"))
            .returning(*returned)
        )
        async with state.db.session() as session:
            with pytest.raises(TypeError):
                statement.defer_statement(session, params)
            assert not session.sync_session.info.get("provisioner.prepared.deferred")
