"""The database connection dropped in the middle of provisioning a Zoom meeting.

The machinery (killing the request's own connection inside its final transaction, or the
pooled one while the provider works) is the one tests/integration/meetings/test_db_faults.py
uses with a fake provider; here Zoom is the stateful simulator, delivery goes through a real
SMTP relay, and the shared invariant check runs afterwards.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from provisioner.state import AppState
from tests.conftest import PG_ENV
from tests.contract.providers.zoom.test_simulator import posts
from tests.faults.api import RECIPIENTS
from tests.faults.conftest import Rig
from tests.faults.harness import Early, until
from tests.integration.meetings.test_db_faults import (
    admin,
    app_pids,
    assert_problem,
    drop_inside_final_transaction,
    terminate,
)


class TestConnectionDroppedInsideTheFinalTransaction:
    async def test_the_zoom_meeting_is_deleted_and_the_retry_makes_one(
        self, rig: Rig, state: AppState, database_url: str
    ) -> None:
        """The meeting exists at Zoom but could not be stored: nobody knows its id, so it
        must be deleted at once (or it lives on, unowned, with working links); the client
        gets a retriable problem and its retry makes exactly one meeting."""
        async with admin(database_url) as admin_engine:
            dropped = drop_inside_final_transaction(
                state, None if state.db.is_sqlite else admin_engine
            )
            failed, retried = await rig.create_twice("evt-db-drop")
        assert dropped, "the fault never fired"
        assert_problem(failed, 503, "database-unavailable")
        assert len(rig.sim.deleted) == 1  # the first attempt's meeting, deleted there
        assert retried.status_code == 201, retried.text
        assert posts(rig.sim, "/meetings") == 2
        found = await rig.settle(log_events=["meeting.provision_failed"])
        assert (found.reconciled, found.sent) == (0, RECIPIENTS)


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")
class TestBackendTerminatedWhileZoomCreates:
    """PostgreSQL only (SQLite has no server connection to kill)."""

    @pytest.fixture
    def database_url(self, postgres_database_url: str) -> str:
        return postgres_database_url

    async def test_the_request_reconnects_and_makes_one_meeting(
        self, rig: Rig, state: AppState, postgres_database_url: str
    ) -> None:
        """A database failover while Zoom works kills the pooled connection the request
        will use next: it must reconnect and finish, not fail a meeting Zoom has made."""
        sim = rig.sim
        pids = await app_pids(state.db.engine)
        sim.early_creates.append(Early.HANG)  # Zoom hangs: the request is away
        async with admin(postgres_database_url) as admin_engine:
            pending = asyncio.create_task(rig.create("evt-failover"))
            await until(lambda: posts(sim, "/meetings") > 0)
            assert await terminate(admin_engine, pids) >= 1  # the pooled one died
            response = await pending
        assert response.status_code == 201, response.text
        found = await rig.settle(log_events=["meeting.provisioned"])
        assert found.sent == RECIPIENTS
