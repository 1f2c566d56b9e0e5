"""Append audit events to a hash chain.

Each event's hash covers its content and the previous event's hash, so editing, inserting
or deleting an event breaks every hash after it (`verify_chain` says where). Appends are
serialised -- a PostgreSQL transaction-level advisory lock, SQLite's single writer -- so two
concurrent transactions cannot both chain onto the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, Text, bindparam, func, insert, select
from sqlalchemy import event as orm_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from provisioner.audit.models import AuditEvent
from provisioner.db import utcnow
from provisioner.prepared import Prepared, write_deferred
from provisioner.redaction import redact

GENESIS = "0" * 64
_CHAIN_LOCK = 0x70726F76  # "prov": the advisory lock id for the audit chain


def event_digest(
    *,
    prev_hash: str,
    occurred_at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any],
) -> str:
    """The event's hash: SHA-256 of its canonical JSON, which includes `prev_hash`."""
    head, tail = body_around_prev(
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )
    return hashlib.sha256(f"{head}{prev_hash}{tail}".encode()).hexdigest()


def body_around_prev(
    *,
    occurred_at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any],
) -> tuple[str, str]:
    """The event's canonical JSON split where the value of its "prev" key goes.

    The body is `{"action":…,"actor":…,"at":…,"details":…,"prev":"<hash>","target":[…]}`
    (keys sorted, no spaces, ASCII). Split this way, PostgreSQL can chain an event by
    putting the head's hash between the halves (`audit_append`, migration 0010) without
    re-serialising anything. "target" is the last key and its value two JSON strings,
    which cannot contain `,"target":[` unescaped: so the last occurrence is the key's own.
    A previous hash is hex and needs no escaping.
    """
    body = json.dumps(
        {
            "at": occurred_at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "target": [target_type, target_id],
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    split = body.rindex(_TARGET_KEY)
    return f'{body[:split]},"prev":"', f'"{body[split:]}'


_TARGET_KEY = ',"target":['


async def record_event(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event in the caller's transaction (so it commits or rolls back with it).

    Nothing is added to the session: the event is kept as a plain row (no ORM object to
    build) and inserted at commit.

    The event is chained and inserted when the transaction commits (`_chain_on_commit`), not
    here: the chain lock must be the last lock a transaction takes, or a transaction holding
    it could wait for a row another transaction has locked while that one waits for the
    chain -- a deadlock seen with two API processes and two workers. `details` are redacted
    now; pass ids and states, never secrets.
    """
    pending = {
        "occurred_at": utcnow(),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "details": redact(details or {}),
    }
    session.sync_session.info.setdefault(_PENDING, []).append(pending)


_PENDING = "provisioner.audit.pending"


def _chain_on_commit(session: Session) -> None:
    """Chain and insert this transaction's pending events, under the chain lock.

    On PostgreSQL a transaction-level advisory lock serialises appends across processes,
    and `audit_append` (migration 0010) takes it, reads the chain's head, hashes and
    inserts the events in one round trip. SQLite has a single writer anyway: there the
    head is read and the hashes computed here. Either way ids are assigned inside the
    lock, so id order is chain order.
    """
    if session.in_nested_transaction():
        return  # a savepoint released: the events belong to the whole transaction
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return  # rows deferred in the transaction go with prepared.py's own hook
    session.flush()  # the transaction's own rows first: the chain lock is its last lock
    connection = session.connection()  # plain rows from here: no ORM, no result objects
    if connection.dialect.name == "postgresql":
        # With the transaction's deferred inserts, in one round trip (prepared.py).
        write_deferred(session, last=(_APPEND, _append_arguments(pending)))
        return
    write_deferred(session)
    last = _LAST_HASH.run(connection, None).rows
    prev = last[0][0] if last else GENESIS
    for event in pending:
        event["prev_hash"] = prev
        event["hash"] = prev = event_digest(prev_hash=prev, **_content(event))
    # One executemany in chain order (ids ascend with it), not an ORM flush per event:
    # nothing reads an event back in the transaction that wrote it.
    _INSERT.run(connection, pending)


def _content(event: dict[str, Any]) -> dict[str, Any]:
    """What a pending event's hash covers, besides the previous hash."""
    return {key: event[key] for key in _CONTENT}


_CONTENT = ("occurred_at", "actor", "action", "target_type", "target_id", "details")


def _append_arguments(pending: list[dict[str, Any]]) -> dict[str, Any]:
    """`audit_append`'s arrays: one element per event, in chain order."""
    halves = [body_around_prev(**_content(event)) for event in pending]
    return {
        "lock_id": _CHAIN_LOCK,
        "occurred": [event["occurred_at"] for event in pending],
        "actors": [event["actor"] for event in pending],
        "actions": [event["action"] for event in pending],
        "target_types": [event["target_type"] for event in pending],
        "target_ids": [event["target_id"] for event in pending],
        # As the JSON column would store them (its default serialiser is json.dumps).
        "details_json": [json.dumps(event["details"]) for event in pending],
        "body_heads": [head for head, _ in halves],
        "body_tails": [tail for _, tail in halves],
    }


# Every transaction that audits runs these (provisioner/prepared.py says why they are
# prepared): on SQLite the head's read and the insert, on PostgreSQL `audit_append`.
_INSERT = Prepared(insert(AuditEvent.__table__))  # type: ignore[arg-type]
_LAST_HASH = Prepared(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
_TEXTS = ARRAY(Text)
_APPEND = Prepared(
    select(
        func.audit_append(
            bindparam("lock_id", type_=BigInteger),
            bindparam("occurred", type_=ARRAY(DateTime(timezone=True))),
            bindparam("actors", type_=_TEXTS),
            bindparam("actions", type_=_TEXTS),
            bindparam("target_types", type_=_TEXTS),
            bindparam("target_ids", type_=_TEXTS),
            bindparam("details_json", type_=_TEXTS),
            bindparam("body_heads", type_=_TEXTS),
            bindparam("body_tails", type_=_TEXTS),
            type_=String,
        )
    )
)


def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    """Events of a transaction that ended without them (rolled back) are dropped; a
    savepoint's end is not the transaction's (a savepoint rolled back keeps them)."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


# Before prepared.py's own commit hook (`insert=True`), so that the deferred inserts travel
# with `audit_append`.
orm_event.listen(Session, "before_commit", _chain_on_commit, insert=True)
orm_event.listen(Session, "after_transaction_end", _forget_pending)


async def list_events(
    session: AsyncSession, *, target_id: str | None = None, limit: int = 100
) -> Sequence[AuditEvent]:
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if target_id is not None:
        statement = statement.where(AuditEvent.target_id == target_id)
    return (await session.scalars(statement.limit(limit))).all()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of `verify_chain`: `broken_at` is the first event id that fails."""

    events: int
    broken_at: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Recompute every hash in order; report the first edited, inserted or missing link."""
    prev = GENESIS
    count = 0
    result = await session.stream_scalars(select(AuditEvent).order_by(AuditEvent.id))
    async for event in result:
        count += 1
        if event.prev_hash != prev:
            return ChainReport(
                count,
                event.id,
                "previous hash does not match: an event before it was deleted or inserted",
            )
        expected = event_digest(
            prev_hash=prev,
            occurred_at=event.occurred_at,
            actor=event.actor,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            details=event.details,
        )
        if expected != event.hash:
            return ChainReport(count, event.id, "content does not match its hash: edited")
        prev = event.hash
    return ChainReport(count, None, None)


async def count_events(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)
