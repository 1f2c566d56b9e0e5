"""Reconciliation settles an attempt while its provider create is still running.

`reconcile_stale` fails a `provisioning` row that has been waiting too long and frees its
Idempotency-Key. If the request it gave up on then comes back from the provider, storing
the meeting would leave two live meetings for one request once the client retries: the
final transaction's conditional UPDATE finds no `provisioning` row, the whole transaction
rolls back (invitees, deliveries, audit, idempotency answer), and the meeting just created
at the provider is deleted. Both backends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.meetings.models import Invitee
from provisioner.meetings.reconcile import reconcile_stale
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.conftest import make_settings
from tests.integration.meetings.test_db_faults import (
    assert_problem,
    assert_retry_makes_one,
    rows,
    start_blocked_create,
)

KEY = "calendar-event-reconciled"
STALE_AFTER = 0.5


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, issuer: LocalIssuer, jitsi_config: dict[str, Any]
) -> Settings:
    return make_settings(
        tmp_path,
        database_url,
        issuer,
        jitsi_config,
        idempotency={"wait_seconds": 5.0, "stale_after_seconds": STALE_AFTER},
    )


class TestReconciledWhileTheProviderCreates:
    async def test_nothing_is_stored_the_meeting_is_deleted_and_the_retry_makes_one(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
    ) -> None:
        blocked = await start_blocked_create(client, host_headers, state, key=KEY)
        provider = blocked.provider
        await asyncio.sleep(STALE_AFTER + 0.2)
        settled = await reconcile_stale(
            state.db, settings=state.settings.idempotency, providers=state.providers
        )
        assert settled == 1
        assert await rows(state) == (["failed"], 0, 0)  # failed, nothing queued, key freed
        provider.release.set()
        refused = await asyncio.wait_for(blocked.attempt, timeout=10)
        assert_problem(refused, 409, "meeting-not-changeable")
        # The late meeting was deleted at the provider, and nothing of it was stored.
        assert len(provider.created) == 1 and provider.live == []
        assert await rows(state) == (["failed"], 0, 0)
        async with state.db.session() as session:
            assert await session.scalar(select(func.count(Invitee.id))) == 0
        await assert_retry_makes_one(client, state, blocked)
