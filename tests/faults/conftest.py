"""Fixtures for the fault tests: the app on the suite's database (SQLite, and PostgreSQL
when configured), Zoom as the spec-validated simulator, a real STARTTLS+AUTH SMTP relay,
the delivery worker, and the app's logs captured as production renders them (JSON)."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from provisioner.delivery.worker import DeliveryWorker
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.contract.providers.zoom.test_simulator import Harness as ZoomHarness
from tests.faults.harness import FaultyRelay, FaultyZoom, deterministic_worker
from tests.faults.invariants import FaultWorld
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
