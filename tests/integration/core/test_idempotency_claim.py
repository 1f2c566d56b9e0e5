"""Claiming an Idempotency-Key: a new key by one insert, an existing one by its state.

The claim is `INSERT ... ON CONFLICT DO NOTHING RETURNING id` (one statement for a new key,
the common case); only when the key exists is it read, and an expired one is replaced.
Runs on SQLite and, when configured, PostgreSQL (the two dialects' upserts differ).
"""

from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import select, update

from provisioner.crypto import FieldCipher
from provisioner.db import utcnow
from provisioner.idempotency.models import IdempotencyKey
from provisioner.idempotency.service import Claimed, Replay, claim_key, complete_key
from provisioner.settings import IdempotencySettings
from provisioner.state import AppState

SETTINGS = IdempotencySettings(wait_seconds=0)
CIPHER = FieldCipher({"k1": os.urandom(32)}, active="k1")


async def claim(state: AppState, key: str, fingerprint: str) -> Claimed | Replay:
    return await claim_key(
        state.db,
        scope="host-1",
        key=key,
        fingerprint=fingerprint,
        meeting_id="m-1",
        cipher=CIPHER,
        settings=SETTINGS,
    )


async def test_a_new_key_is_claimed_and_a_completed_one_replays(state: AppState) -> None:
    first = await claim(state, "key-a", "body-1")
    assert isinstance(first, Claimed)
    async with state.db.session() as session:
        complete_key(session, first, status=201, body={"id": "m-1"}, cipher=CIPHER)

    again = await claim(state, "key-a", "body-1")

    assert again == Replay(status=201, body={"id": "m-1"}, meeting_id="m-1")


async def test_an_expired_key_is_replaced_by_a_new_claim(state: AppState) -> None:
    old = await claim(state, "key-b", "body-1")
    assert isinstance(old, Claimed)
    async with state.db.session() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == old.key_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

    new = await claim(state, "key-b", "a different body")  # no longer "reused"

    assert isinstance(new, Claimed)
    async with state.db.session() as session:
        rows = (await session.scalars(select(IdempotencyKey))).all()
    assert [(row.id, row.request_hash) for row in rows] == [(new.key_id, "a different body")]
