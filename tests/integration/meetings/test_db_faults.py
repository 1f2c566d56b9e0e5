"""The database connection dropped in the middle of `POST /api/v1/meetings`.

Two moments matter, because provisioning holds no connection across the provider call:

- while the provider create is in flight the request holds no connection; the one idle in
  the pool is what a database restart or failover kills (PostgreSQL: its backend is
  terminated with `pg_terminate_backend`);
- inside the final transaction (meeting, invitees, outbox, audit, idempotency answer) the
  request's own connection dies under it (PostgreSQL: its backend is terminated from
  another connection; SQLite: the connection is closed under it).

After each: the answer is a problem document, never an unhandled 500; the provider holds
exactly one live meeting once the client retried with the same Idempotency-Key; nothing is
left for reconciliation to find; and no passcode, link or token reached the logs.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only

from provisioner.app import build_state, close_state, create_app
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.delivery.models import Delivery
from provisioner.idempotency.models import IdempotencyKey
from provisioner.logs import configure_logging
from provisioner.meetings.models import Meeting
from provisioner.meetings.reconcile import reconcile_stale
from provisioner.providers.base import MeetingSpec, ProvisionedMeeting
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.conftest import PG_ENV, make_settings
from tests.factories import meeting_body
from tests.fakes.provider import FakeProvider

KEY = "calendar-event-db-fault"


@dataclass
class BlockingProvider(FakeProvider):
    """A fake whose create waits until the test says go, and which keeps what it issued."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    issued: list[ProvisionedMeeting] = field(default_factory=list)

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        self.started.set()
        await self.release.wait()
        created = await super().create(spec, idempotency_key=idempotency_key)
        self.issued.append(created)
        return created

    @property
    def live(self) -> list[str]:
        return [m for m in self.created if m not in self.deleted]


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().handlers.clear()


def secrets_of(provider: BlockingProvider, headers: dict[str, str]) -> set[str]:
    found = {headers["Authorization"].split()[1]}
    for meeting in provider.issued:
        for join in (meeting.host, meeting.shared, *meeting.personal.values()):
            if join is not None:
                found.add(join.url)
                if join.passcode:
                    found.add(join.passcode)
    return found


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith(f"/{code}")
    assert body["status"] == status
    assert "Traceback" not in response.text


async def rows(state: AppState) -> tuple[list[str], int, int]:
    """Meeting states, deliveries queued, idempotency keys still held."""
    async with state.db.session() as session:
        states = sorted((await session.scalars(select(Meeting.state))).all())
        deliveries = len((await session.scalars(select(Delivery.id))).all())
        keys = len((await session.scalars(select(IdempotencyKey.key))).all())
    return states, deliveries, keys


@dataclass
class BlockedCreate:
    """A create with an Idempotency-Key, held at the provider until `provider.release`."""

    provider: BlockingProvider
    attempt: asyncio.Task[httpx.Response]
    body: dict[str, Any]
    headers: dict[str, str]


async def start_blocked_create(
    client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState, *, key: str
) -> BlockedCreate:
    """Send a create to a `BlockingProvider` and return once the provider holds it."""
    provider = BlockingProvider()
    state.providers = {"fake": provider}
    headers = host_headers | {"Idempotency-Key": key}
    body = meeting_body(provider="fake")
    attempt = asyncio.create_task(client.post("/api/v1/meetings", json=body, headers=headers))
    await asyncio.wait_for(provider.started.wait(), timeout=10)
    return BlockedCreate(provider, attempt, body, headers)


async def assert_retry_makes_one(
    client: httpx.AsyncClient, state: AppState, blocked: BlockedCreate
) -> None:
    """After a failed attempt: the retry with the same key makes exactly one live meeting."""
    retried = await client.post("/api/v1/meetings", json=blocked.body, headers=blocked.headers)
    assert retried.status_code == 201, retried.text
    assert len(blocked.provider.live) == 1
    states, deliveries, keys = await rows(state)
    assert states == ["failed", "verified"]
    assert deliveries == len(blocked.body["invitees"]) + 1 and keys == 1


async def app_pids(engine: AsyncEngine) -> set[int]:
    """The PostgreSQL backend pid of every connection the app's engine opens from now on.

    The pool is emptied first: a connection a fixture opened before (writing the test's
    browser sessions, say) would otherwise serve the request unrecorded.
    """
    pids: set[int] = set()

    @event.listens_for(engine.sync_engine, "connect")
    def remember(dbapi_connection: Any, _record: Any) -> None:
        pids.add(dbapi_connection.driver_connection.get_server_pid())

    await engine.dispose()
    return pids


@asynccontextmanager
async def admin(url: str) -> AsyncIterator[AsyncEngine]:
    """A separate engine, as a DBA or a failover would be: not the app's pool."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


async def terminate(engine: AsyncEngine, pids: set[int]) -> int:
    async with engine.connect() as connection:
        killed = await connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
            {"pids": list(pids)},
        )
        await connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
            {"pids": list(pids)},
        )
        return int(killed or 0)


def drop_inside_final_transaction(state: AppState, admin_engine: AsyncEngine | None) -> list[str]:
    """Kill the request's own connection just before it writes the invitees (once).

    The hook runs inside SQLAlchemy's greenlet, so `await_only` can wait for the kill
    without blocking the event loop. Returns a list that records the drop.
    """
    dropped: list[str] = []

    @event.listens_for(state.db.engine.sync_engine, "before_cursor_execute")
    def kill(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # On PostgreSQL the invitees go in one statement with the deliveries and the
        # audit events (`Prepared.defer`): a WITH whose first part inserts them.
        if dropped or "INSERT INTO INVITEES" not in statement.upper():
            return
        driver = conn.connection.driver_connection
        if admin_engine is None:  # SQLite: close the connection under the transaction
            await_only(driver.close())
            dropped.append("closed")
        else:
            await_only(terminate(admin_engine, {driver.get_server_pid()}))
            dropped.append("terminated")

    return dropped


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, issuer: LocalIssuer, jitsi_config: dict[str, Any]
) -> Settings:
    """The suite's settings, with claims counted stale after one second, so that the
    reconciliation run below would settle anything half-done without a five-minute wait."""
    return make_settings(
        tmp_path,
        database_url,
        issuer,
        jitsi_config,
        idempotency={"wait_seconds": 5.0, "stale_after_seconds": 1.0},
    )


class TestConnectionDroppedInsideTheFinalTransaction:
    """Both backends: the request's own connection dies while it stores the meeting."""

    async def test_problem_answer_provider_cleaned_retry_makes_one_meeting(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        database_url: str,
    ) -> None:
        provider = BlockingProvider()
        provider.release.set()
        state.providers = {"fake": provider}
        headers = host_headers | {"Idempotency-Key": KEY}
        body = meeting_body(provider="fake")
        async with admin(database_url) as admin_engine:
            dropped = drop_inside_final_transaction(
                state, None if state.db.is_sqlite else admin_engine
            )
            with captured_logs() as logs:
                failed = await client.post("/api/v1/meetings", json=body, headers=headers)
                assert dropped, "the fault never fired"
                assert_problem(failed, 503, "database-unavailable")
                assert failed.headers["retry-after"]
                # The attempt's provider meeting was deleted: nobody was told of it.
                assert provider.created == provider.deleted and len(provider.created) == 1
                # ...and the attempt was rolled back and its key released: the retry runs.
                assert (await rows(state))[0] == ["failed"]
                retried = await client.post("/api/v1/meetings", json=body, headers=headers)
                assert retried.status_code == 201, retried.text
                replay = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert replay.status_code == 201 and replay.json()["id"] == retried.json()["id"]
        assert len(provider.live) == 1 and len(provider.created) == 2
        states, deliveries, keys = await rows(state)
        assert states == ["failed", "verified"]
        assert deliveries == len(body["invitees"]) + 1  # the host's and each invitee's
        assert keys == 1
        await asyncio.sleep(1.1)  # older than idempotency.stale_after_seconds
        settled = await reconcile_stale(
            state.db, settings=state.settings.idempotency, providers=state.providers
        )
        assert settled == 0 and len(provider.live) == 1  # nothing was left half-done
        text_logs = logs.getvalue()
        assert "meeting.provision_failed" in text_logs  # the capture saw the failure
        for secret in secrets_of(provider, host_headers):
            assert secret not in text_logs


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")
class TestBackendTerminatedWhileTheProviderCreates:
    """PostgreSQL: the pooled connection is killed while the provider works."""

    async def test_the_request_reconnects_and_makes_one_meeting(
        self,
        tmp_path: Path,
        postgres_database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
    ) -> None:
        settings = make_settings(
            tmp_path,
            postgres_database_url,
            issuer,
            jitsi_config,
            idempotency={"wait_seconds": 5.0, "stale_after_seconds": 1.0},
        )
        state = build_state(settings)
        pids = await app_pids(state.db.engine)
        provider = BlockingProvider()
        state.providers = {"fake": provider}
        app = create_app(settings, state=state, run_worker=False)
        headers = host_headers | {"Idempotency-Key": KEY}
        body = meeting_body(provider="fake")
        try:
            async with (
                admin(postgres_database_url) as admin_engine,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
                ) as client,
            ):
                with captured_logs() as logs:
                    pending = asyncio.create_task(
                        client.post("/api/v1/meetings", json=body, headers=headers)
                    )
                    await asyncio.wait_for(provider.started.wait(), timeout=30)
                    assert await terminate(admin_engine, pids) >= 1  # the pooled one died
                    provider.release.set()
                    response = await asyncio.wait_for(pending, timeout=30)
                    assert response.status_code == 201, response.text
                    replay = await client.post("/api/v1/meetings", json=body, headers=headers)
            assert replay.json()["id"] == response.json()["id"]
            assert provider.created and provider.live == provider.created
            assert len(provider.created) == 1
            states, deliveries, keys = await rows(state)
            assert states == ["verified"] and keys == 1
            assert deliveries == len(body["invitees"]) + 1
            await asyncio.sleep(1.1)  # older than idempotency.stale_after_seconds
            settled = await reconcile_stale(
                state.db, settings=settings.idempotency, providers=state.providers
            )
            assert settled == 0 and len(provider.live) == 1
            text_logs = logs.getvalue()
            assert "meeting.provisioned" in text_logs
            for secret in secrets_of(provider, host_headers):
                assert secret not in text_logs
        finally:
            await close_state(state)
