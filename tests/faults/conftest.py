"""Fixtures for the fault tests: the app on the suite's database (SQLite, and PostgreSQL
when configured), Zoom as the spec-validated simulator, a real STARTTLS+AUTH SMTP relay,
the delivery worker, and the app's logs captured as production renders them (JSON).
`rig` bundles them for a test that asks for a meeting, breaks something and checks."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass

import httpx
import pytest

from provisioner.delivery.worker import DeliveryWorker
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.contract.providers.zoom.test_simulator import Harness as ZoomHarness
from tests.faults import api
from tests.faults.harness import FaultyRelay, FaultyZoom, deterministic_worker
from tests.faults.invariants import FaultWorld, Findings, check_invariants
from tests.integration.meetings.test_db_faults import captured_logs
from tests.support.meeting_fixtures import SettingsFactory, smtp_email
from tests.support.smtp import SmtpServer


@pytest.fixture
def relay(start_smtp_server: Callable[..., SmtpServer]) -> SmtpServer:
    """The mail relay (STARTTLS and AUTH required), whose replies a test can set."""
    return start_smtp_server(handler=FaultyRelay())


@pytest.fixture
def settings(settings_with: SettingsFactory, relay: SmtpServer) -> Settings:
    """The suite's settings, delivering email through the relay."""
    return settings_with(email=smtp_email(relay))


@pytest.fixture
async def zoom(state: AppState) -> AsyncIterator[ZoomHarness]:
    """Zoom (the simulator) as the app's only provider; its sleeps are recorded, not slept,
    and its read timeout is half a second, so hang faults time out fast."""
    harness = ZoomHarness(FaultyZoom(hang_seconds=5.0))
    state.providers = {"zoom": harness.provider}
    yield harness
    await harness.provider.aclose()
    assert harness.sim.violations == []


@pytest.fixture
def worker(state: AppState) -> DeliveryWorker:
    return deterministic_worker(state)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the app logs, at DEBUG, rendered as JSON. The test relay's own
    protocol log ("mail.log" quotes each message it receives) is another system's log
    and is left out."""
    relay_log = logging.getLogger("mail.log")
    relay_log.propagate = False
    try:
        with captured_logs() as stream:
            yield stream
    finally:
        relay_log.propagate = True


@pytest.fixture
def world(
    state: AppState,
    settings: Settings,
    zoom: ZoomHarness,
    relay: SmtpServer,
    host_headers: dict[str, str],
) -> FaultWorld:
    assert isinstance(zoom.sim, FaultyZoom)
    return FaultWorld(
        db=state.db,
        cipher=state.cipher,
        providers=state.providers,
        zoom=zoom.sim,
        relay=relay.handler,
        settings=settings,
        bearer_tokens=[host_headers["Authorization"].split()[1]],
    )


@dataclass(frozen=True)
class Rig:
    """The app (through its API, as the host), Zoom, the worker, the parts the check
    reads and the captured logs: what a fault test drives, then checks."""

    client: httpx.AsyncClient
    headers: dict[str, str]  # the host's
    zoom: ZoomHarness
    worker: DeliveryWorker
    world: FaultWorld
    logs: io.StringIO

    @property
    def sim(self) -> FaultyZoom:
        """Zoom itself (the simulator behind the app's provider)."""
        return self.world.zoom

    async def create(self, key: str) -> httpx.Response:
        return await api.create(self.client, self.headers, key)

    async def create_twice(self, key: str) -> tuple[httpx.Response, httpx.Response]:
        return await api.create_twice(self.client, self.headers, key)

    async def made(self, key: str) -> httpx.Response:
        """`create`, which must succeed."""
        response = await self.create(key)
        assert response.status_code == 201, response.text
        return response

    async def check(
        self,
        *,
        meetings: int = 1,
        refused: Collection[str] = (),
        log_events: Collection[str] = (),
        extra_logs: str = "",
    ) -> Findings:
        """`check_invariants` on the logs captured so far (plus `extra_logs`)."""
        return await check_invariants(
            self.world,
            logs=self.logs.getvalue() + extra_logs,
            meetings=meetings,
            refused=refused,
            log_events=log_events,
        )

    async def settle(
        self,
        *,
        meetings: int = 1,
        refused: Collection[str] = (),
        log_events: Collection[str] = (),
    ) -> Findings:
        """Let the worker deliver all it can, then `check`."""
        await self.worker.drain()
        return await self.check(meetings=meetings, refused=refused, log_events=log_events)


@pytest.fixture
def rig(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    zoom: ZoomHarness,
    worker: DeliveryWorker,
    world: FaultWorld,
    logs: io.StringIO,
) -> Rig:
    return Rig(client, host_headers, zoom, worker, world, logs)
