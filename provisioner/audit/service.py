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

from sqlalchemy import BigInteger, String, bindparam, func, insert, select
from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from provisioner.audit.models import AuditEvent
from provisioner.db import utcnow
from provisioner.prepared import Prepared
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
    body = json.dumps(
        {
            "prev": prev_hash,
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
    return hashlib.sha256(body.encode()).hexdigest()


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

    On PostgreSQL a transaction-level advisory lock serialises appends across processes
    (SQLite has a single writer anyway), taken together with the read of the chain's head
    (`audit_chain_head`, migration 0009); ids are assigned inside the lock, so id order is
    chain order.
    """
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    session.flush()  # the transaction's own rows first: the chain lock is its last lock
    connection = session.connection()  # plain rows from here: no ORM, no result objects
    if connection.dialect.name == "postgresql":
        # The lock and the head in one round trip (migration 0009 says why it is correct).
        head = _LOCKED_HEAD.run(connection, {"lock_id": _CHAIN_LOCK}).rows[0][0]
    else:
        last = _LAST_HASH.run(connection, None).rows
        head = last[0][0] if last else None
    prev = head or GENESIS
    for event in pending:
        event["prev_hash"] = prev
        event["hash"] = prev = event_digest(
            prev_hash=prev,
            occurred_at=event["occurred_at"],
            actor=event["actor"],
            action=event["action"],
            target_type=event["target_type"],
            target_id=event["target_id"],
            details=event["details"],
        )
    # One executemany in chain order (ids ascend with it), not an ORM flush per event:
    # nothing reads an event back in the transaction that wrote it.
    _INSERT.run(connection, pending)


# Every transaction that audits runs both (provisioner/prepared.py says why they are
# prepared).
_INSERT = Prepared(insert(AuditEvent.__table__))  # type: ignore[arg-type]
_LAST_HASH = Prepared(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
_LOCKED_HEAD = Prepared(
    select(func.audit_chain_head(bindparam("lock_id", type_=BigInteger), type_=String))
)


def _forget_pending(session: Session, *_: Any) -> None:
    session.info.pop(_PENDING, None)


orm_event.listen(Session, "before_commit", _chain_on_commit)
orm_event.listen(Session, "after_rollback", _forget_pending)


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
