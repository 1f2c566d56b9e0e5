"""The Idempotency-Key's record vanishes while its request is at the provider.

A claim can disappear under a running request only by hand (an operator clearing keys)
or by a purge. The final transaction then has nowhere to keep the answer: its deferred
`UPDATE idempotency_keys` changes no row, the commit fails and rolls back everything
(meeting, invitees, deliveries, audit), and the caller gets a 409 problem, never a 500.
The meeting created at the provider is deleted, and a retry with the same key makes
exactly one meeting. Both backends.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import delete, func, select

from provisioner.audit.models import AuditEvent
from provisioner.idempotency.models import IdempotencyKey
from provisioner.meetings.models import Invitee
from provisioner.state import AppState
from tests.integration.meetings.test_db_faults import (
    assert_problem,
    assert_retry_makes_one,
    rows,
    start_blocked_create,
)

KEY = "calendar-event-key-lost"


class TestKeyVanishesWhileTheProviderCreates:
    async def test_409_nothing_stored_the_meeting_deleted_and_the_retry_makes_one(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
    ) -> None:
        blocked = await start_blocked_create(client, host_headers, state, key=KEY)
        provider = blocked.provider
        async with state.db.session() as session:
            gone = await session.execute(delete(IdempotencyKey))
        assert gone.rowcount == 1  # type: ignore[attr-defined]
        provider.release.set()

        refused = await asyncio.wait_for(blocked.attempt, timeout=10)

        assert_problem(refused, 409, "idempotency-key-lost")
        assert KEY not in refused.text
        assert len(provider.created) == 1 and provider.live == []
        assert await rows(state) == (["failed"], 0, 0)
        async with state.db.session() as session:
            assert await session.scalar(select(func.count(Invitee.id))) == 0
            actions = (await session.scalars(select(AuditEvent.action))).all()
        assert "meeting.created" not in actions and "meeting.failed" in actions

        await assert_retry_makes_one(client, state, blocked)
