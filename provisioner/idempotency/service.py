"""Idempotent creation, with the semantics API users know from payment APIs.

A key is scoped to the caller and kept at least 24 hours. The same key with the same body
replays the first response; with a different body it is refused; while the first request
is still running, a duplicate waits for it (up to `wait_seconds`) and then gets 409 --
never a second meeting. The claim row is committed (with the meeting's `provisioning` row,
nothing else) *before* the provider is called, so a concurrent duplicate on any replica
sees it; the response is stored in the
same transaction as the meeting, so "meeting exists" and "key completed" cannot disagree.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.crypto import FieldCipher
from provisioner.db import Database, utcnow
from provisioner.idempotency.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.prepared import DeferredMismatch, Later, Prepared
from provisioner.settings import IdempotencySettings

_POLL_SECONDS = 0.05


def request_fingerprint(payload: Any) -> str:
    """A stable hash of a request body (canonical JSON)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claimed:
    """We own the key: go ahead and create."""

    key_id: int


@dataclass(frozen=True)
class Replay:
    """The key completed before: return this response as it was."""

    status: int
    body: dict[str, Any]
    meeting_id: str | None


def _context(key_id: int) -> str:
    return f"idempotency_keys:{key_id}:response"


async def claim_key(
    db: Database,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    meeting_id: str,
    cipher: FieldCipher,
    settings: IdempotencySettings,
    then: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> Claimed | Replay:
    """Claim `key` for `scope`, or return the stored response of the request that did.

    `then` runs in the claim's own transaction (the caller's first rows, committed with
    the claim -- still before any provider is called). The claim is written at that
    commit: if the key turns out to exist, `then`'s rows roll back and it may run again
    in a later attempt, so it must only write in the transaction it is given.

    Raises:
        IdempotencyKeyReused: the key was used with a different body.
        IdempotencyKeyInFlight: the first request is still running after `wait_seconds`.
    """
    row = _claim_row(scope, key, fingerprint, meeting_id, settings)
    first = await _claim_at_commit(db, row, then)
    if first is not None:
        return first
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.wait_seconds
    while True:
        try:
            async with db.session() as session:
                outcome = await _try_claim(
                    session,
                    scope=scope,
                    key=key,
                    fingerprint=fingerprint,
                    cipher=cipher,
                    row=_claim_row(scope, key, fingerprint, meeting_id, settings),
                )
                if isinstance(outcome, Claimed) and then is not None:
                    await then(session)
        except IntegrityError:
            outcome = None  # another request inserted it first; look again
        if outcome is not None:
            return outcome
        if loop.time() >= deadline:
            raise IdempotencyKeyInFlight(
                "a request with this Idempotency-Key is still being processed; retry shortly"
            )
        await asyncio.sleep(_POLL_SECONDS)


async def find_replay(
    db: Database, *, scope: str, key: str, fingerprint: str, cipher: FieldCipher
) -> Replay | None:
    """The stored response of a completed request with this key and body, if there is one.

    For a request refused before it could claim its key (its start has passed since the
    first attempt, say): a retry of a request that succeeded replays that success rather
    than refusing what was already created. Anything else (no key, another body, still
    in flight, expired) is None, and the refusal stands.
    """
    async with db.session() as session:
        existing = (await session.execute(_FIND, {"scope": scope, "key": key})).one_or_none()
    if (
        existing is None
        or existing.expires_at <= utcnow()
        or existing.request_hash != fingerprint
        or existing.state != KeyState.COMPLETED
        or existing.response_secret is None
    ):
        return None
    return _replay(existing, cipher)


def _replay(existing: Any, cipher: FieldCipher) -> Replay:
    body = json.loads(cipher.decrypt(existing.response_secret, context=_context(existing.id)))
    return Replay(status=existing.response_status or 200, body=body, meeting_id=existing.meeting_id)


async def _claim_at_commit(
    db: Database,
    row: dict[str, Any],
    then: Callable[[AsyncSession], Awaitable[None]] | None,
) -> Claimed | None:
    """A new key -- nearly every request -- claimed at the commit of `then`'s own rows:
    on PostgreSQL in their statement (`Prepared.defer_statement`), one round trip fewer
    than claiming first. None when the key exists: that transaction rolled back, `then`'s
    rows with it, and the caller looks the key up."""
    later: Later | None = None
    try:
        async with db.session() as session:
            claim = _CLAIM[session.sync_session.get_bind().dialect.name]
            later = claim.defer_statement(session, row, expect=1)
            if then is not None:
                await then(session)
    except DeferredMismatch as mismatch:
        if mismatch.later is not later:
            raise
        return None
    except IntegrityError:
        return None  # another request inserted it first (SQLite's plain insert race)
    assert later is not None  # noqa: S101 (set before the commit that filled it)
    return Claimed(key_id=int(later.outcome.rows[0][0]))


def _claim_row(
    scope: str, key: str, fingerprint: str, meeting_id: str, settings: IdempotencySettings
) -> dict[str, Any]:
    now = utcnow()
    return {
        "scope": scope,
        "key": key,
        "request_hash": fingerprint,
        "state": KeyState.IN_FLIGHT,
        "meeting_id": meeting_id,
        "created_at": now,
        "expires_at": now + timedelta(hours=settings.retention_hours),
    }


async def _try_claim(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    cipher: FieldCipher,
    row: dict[str, Any],
) -> Claimed | Replay | None:
    now = row["created_at"]
    # Claimed by the insert when the key is new (gone since the first attempt looked);
    # otherwise looked up, and replaced if it expired.
    claimed = (await _CLAIM[session.get_bind().dialect.name](session, row)).rows
    if claimed:
        return Claimed(key_id=int(claimed[0][0]))
    existing = (
        await session.execute(_FIND, {"scope": scope, "key": key})
    ).one_or_none()  # Core: a plain row, no ORM object to build for a key we only read
    if existing is None:
        return None  # expired and removed by another request just now: look again
    if existing.expires_at <= now:
        await session.execute(delete(_KEYS).where(_KEYS.c.id == existing.id))
        result = await session.execute(_INSERT, row)
        (key_id,) = result.inserted_primary_key  # type: ignore[attr-defined]
        return Claimed(key_id=int(key_id))
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new request"
        )
    if existing.state == KeyState.COMPLETED and existing.response_secret is not None:
        return _replay(existing, cipher)
    return None


_KEYS: Table = IdempotencyKey.__table__  # type: ignore[assignment]
_FIND = select(
    _KEYS.c.id,
    _KEYS.c.request_hash,
    _KEYS.c.state,
    _KEYS.c.meeting_id,
    _KEYS.c.response_status,
    _KEYS.c.response_secret,
    _KEYS.c.expires_at,
).where(_KEYS.c.scope == bindparam("scope"), _KEYS.c.key == bindparam("key"))
_INSERT = insert(_KEYS)
# INSERT ... ON CONFLICT (scope, key) DO NOTHING RETURNING id: the id when the key is new,
# no row when it exists (on PostgreSQL after the other transaction has committed or
# rolled back, so a concurrent duplicate then finds that transaction's outcome).
# Prepared: every create runs it (provisioner/prepared.py says why).
_CLAIM = {
    "sqlite": Prepared(
        sqlite_insert(_KEYS)
        .on_conflict_do_nothing(index_elements=[_KEYS.c.scope, _KEYS.c.key])
        .returning(_KEYS.c.id)
    ),
    "postgresql": Prepared(
        postgresql_insert(_KEYS)
        .on_conflict_do_nothing(index_elements=[_KEYS.c.scope, _KEYS.c.key])
        .returning(_KEYS.c.id)
    ),
}


def complete_key(
    session: AsyncSession,
    claim: Claimed,
    *,
    status: int,
    body: dict[str, Any],
    cipher: FieldCipher,
) -> Later:
    """Store the response in the caller's transaction (the one that persists the meeting).

    The body holds the host's join details, so it is encrypted like any other secret.

    Returns:
        The deferred UPDATE: written at the commit (on PostgreSQL with the transaction's
        last statement). A key that vanished meanwhile fails that commit with a
        `DeferredMismatch` naming this `Later`, so the caller can tell it apart.
    """
    return _COMPLETE.defer_statement(
        session,
        {
            "key_id": claim.key_id,
            "new_state": KeyState.COMPLETED,
            "new_status": status,
            "new_secret": cipher.encrypt(json.dumps(body), context=_context(claim.key_id)),
        },
        expect=1,
    )


_COMPLETE = Prepared(  # every create runs it (provisioner/prepared.py says why)
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .values(
        state=bindparam("new_state"),
        response_status=bindparam("new_status"),
        response_secret=bindparam("new_secret"),
    )
)


async def release_key(session: AsyncSession, claim: Claimed) -> None:
    """Forget a claim whose request failed, so a retry with the same key runs again."""
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim.key_id))


async def purge_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
