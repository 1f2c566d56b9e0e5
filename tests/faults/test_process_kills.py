"""SIGKILL: the API while Zoom creates a meeting, and a worker in the middle of a batch.

Both run the real command (`python -m provisioner serve` / `worker`) on the suite's
database (SQLite file, or PostgreSQL when configured), Zoom is the simulator on a real
port, mail goes to the real relay. Each process's stderr (its logs, at DEBUG, as JSON) is
kept, and the shared check reads it along with this process's own logs.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.app import build_state, close_state
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.db import Database
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.conftest import REPO_ROOT
from tests.contract.providers.zoom.test_simulator import AUTH_OPTION
from tests.faults.api import BODY, RECIPIENTS
from tests.faults.conftest import Rig
from tests.faults.harness import FaultyRelay, FaultyZoom, deterministic_worker, until
from tests.faults.invariants import FaultWorld, check_invariants
from tests.integration.delivery.test_scale_out import write_config
from tests.integration.meetings.test_crash_recovery import config_file, wait_ready
from tests.simulators.validation import FaultKind
from tests.support.live import free_port, serve_asgi
from tests.support.meeting_fixtures import SettingsFactory, smtp_email
from tests.support.smtp import SmtpServer


def child_env(config: Path, **extra: str) -> dict[str, str]:
    """This environment without our settings, plus the config file and DEBUG JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    env |= {
        "PROVISIONER_CONFIG": str(config),
        "PROVISIONER_LOG_LEVEL": "DEBUG",
        "PROVISIONER_LOG_FORMAT": "json",
    }
    return env | extra


@contextmanager
def provisioner(
    logs_dir: Path, name: str, *args: str, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m provisioner ARGS` with stderr in `logs_dir/NAME.log`; stopped (TERM,
    then KILL) when the block ends, if the test has not killed it already."""
    logs_dir.mkdir(exist_ok=True)
    with (logs_dir / f"{name}.log").open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 (our own CLI)
            [sys.executable, "-m", "provisioner", *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def logs_of(logs_dir: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted(logs_dir.glob("*.log")))


def smtp_env(relay: SmtpServer) -> dict[str, str]:
    """The relay as `PROVISIONER_EMAIL__...` variables (they win over the config file)."""
    smtp = relay.settings()
    assert smtp.password is not None
    return {
        "PROVISIONER_EMAIL__TRANSPORT": "smtp",
        "PROVISIONER_EMAIL__SENDER": "Meetings <meetings@example.com>",
        "PROVISIONER_EMAIL__SMTP__HOST": smtp.host,
        "PROVISIONER_EMAIL__SMTP__PORT": str(smtp.port),
        "PROVISIONER_EMAIL__SMTP__SECURITY": smtp.security,
        "PROVISIONER_EMAIL__SMTP__USERNAME": str(smtp.username),
        "PROVISIONER_EMAIL__SMTP__PASSWORD": smtp.password.get_secret_value(),
        "PROVISIONER_EMAIL__SMTP__CA_FILE": str(smtp.ca_file),
        "PROVISIONER_EMAIL__SMTP__TIMEOUT_SECONDS": str(smtp.timeout_seconds),
    }


def zoom_settings(sim: FaultyZoom, url: str) -> dict[str, Any]:
    return {
        "account_id": sim.account_id,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "api_url": url,
        "oauth_url": url,
        "authentication_option": AUTH_OPTION,
    }


async def unsent(db: Database) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status != DeliveryStatus.SENT)
        )
    return int(count or 0)


class TestApiKilledMidProvisioning:
    async def test_restart_deletes_the_orphan_and_the_retry_makes_one_meeting(
        self,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        settings_with: SettingsFactory,
        relay: SmtpServer,
        host_headers: dict[str, str],
        logs: io.StringIO,
    ) -> None:
        """The API dies after Zoom created the meeting and before we stored it. Nobody
        knows that meeting, so the restart must delete it (else it lives on, unowned,
        with working links), release the key, and let the client's retry make one."""
        sim = FaultyZoom(hang_seconds=2.0)  # outlives the kill; short for teardown
        sim.create_faults.push(FaultKind.HANG_AFTER_COMMIT)  # Zoom creates, then we die
        port = str(free_port())
        url = f"http://127.0.0.1:{port}"
        headers = host_headers | {"Idempotency-Key": "evt-api-killed"}
        children = tmp_path / "children"
        with serve_asgi(sim) as zoom_url:
            settings = settings_with(
                email=smtp_email(relay),
                providers={"zoom": zoom_settings(sim, zoom_url)},
            )
            state = build_state(settings)  # also writes the data key the API will read
            config = config_file(
                tmp_path / "api.toml",
                database_url=database_url,
                issuer=issuer,
                zoom_url=zoom_url,
                sim=sim,
            )
            env = child_env(config)
            try:
                with provisioner(children, "api-killed", "serve", "--port", port, env=env) as api:
                    await wait_ready(url, api)
                    async with httpx.AsyncClient(timeout=60.0) as http:
                        pending = asyncio.create_task(
                            http.post(f"{url}/api/v1/meetings", json=BODY, headers=headers)
                        )
                        await until(
                            lambda: bool(sim.meetings), process=api
                        )  # created at Zoom, not stored by us
                        api.send_signal(signal.SIGKILL)
                        api.wait(timeout=10)
                        with pytest.raises(httpx.TransportError):
                            await pending
                await asyncio.sleep(1.5)  # older than idempotency.stale_after_seconds
                with provisioner(
                    children, "api-restarted", "serve", "--port", port, env=env
                ) as api:
                    await wait_ready(url, api)  # start-up reconciliation has run
                    assert sim.meetings == {} and len(sim.deleted) == 1
                    async with httpx.AsyncClient(timeout=60.0) as http:
                        retried = await http.post(
                            f"{url}/api/v1/meetings", json=BODY, headers=headers
                        )
                    assert retried.status_code == 201, retried.text
                await deterministic_worker(state).drain()
                found = await check_invariants(
                    FaultWorld(
                        db=state.db,
                        cipher=state.cipher,
                        providers=state.providers,
                        zoom=sim,
                        relay=relay.handler,
                        settings=settings,
                        bearer_tokens=[host_headers["Authorization"].split()[1]],
                    ),
                    logs=logs.getvalue() + logs_of(children),
                    meetings=1,
                    log_events=["meeting.orphan_deleted", "meeting.provisioned"],
                )
                assert found.sent == RECIPIENTS
                # `serve` runs with the server's collector settings (provisioner.heap).
                assert re.search(r'"heap_frozen": [1-9]', logs_of(children))
            finally:
                await close_state(state)


class TestWorkerKilledMidBatch:
    async def test_the_successor_sends_the_rest_and_only_the_message_in_flight_repeats(
        self,
        rig: Rig,
        tmp_path: Path,
        state: AppState,
        settings: Settings,
        jitsi_config: dict[str, Any],
        relay: SmtpServer,
    ) -> None:
        """A worker dies holding a batch: one message accepted by the relay but not
        recorded, the rest claimed but unsent. Its successor must send every one of them
        once the lease runs out; only the message in flight may arrive twice."""
        for n in range(3):
            await rig.made(f"evt-batch-{n}")
        handler = relay.handler
        assert isinstance(handler, FaultyRelay)
        handler.hold_at = 3  # the fourth message of the first batch (of ten)
        config = write_config(tmp_path / "worker.toml", settings, jitsi_config, lease_seconds=1.0)
        env = child_env(config, **smtp_env(relay))
        children = tmp_path / "children"

        async def all_sent() -> bool:
            return await unsent(state.db) == 0

        try:
            with provisioner(children, "worker-killed", "worker", env=env) as victim:
                await until(handler.holding.is_set, process=victim)
                victim.send_signal(signal.SIGKILL)  # mid-batch: nothing more is recorded
                victim.wait(timeout=10)
        finally:
            handler.release.set()
        with provisioner(children, "worker-successor", "worker", env=env) as successor:
            await until(all_sent, process=successor)
        found = await rig.check(
            meetings=3, extra_logs=logs_of(children), log_events=["worker.started", "delivery.sent"]
        )
        assert (found.sent, found.waiting) == (3 * RECIPIENTS, 0)
        assert found.resent == 1  # the message the relay took as the worker died
