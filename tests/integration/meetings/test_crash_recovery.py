"""The API killed (SIGKILL) while a Zoom create is in flight: on restart the orphan Zoom
meeting is found and deleted, the idempotency key is released, and the client's retry
makes exactly one meeting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.db import Database, create_engine
from provisioner.meetings.models import Meeting
from provisioner.settings import DatabaseSettings
from tests.conftest import PG_ENV, REPO_ROOT
from tests.factories import meeting_body
from tests.simulators.validation import FaultKind
from tests.simulators.zoom import ZoomSimulator
from tests.support.live import free_port, serve_asgi


def config_file(
    path: Path, *, database_url: str, issuer: LocalIssuer, zoom_url: str, sim: ZoomSimulator
) -> Path:
    jwks = issuer.write_jwks(path.parent / "jwks.json")
    lines = [
        f"policy_file = {json.dumps(str(REPO_ROOT / 'config' / 'policy.yaml'))}",
        'default_provider = "zoom"',
        "[database]",
        f"url = {json.dumps(database_url)}",
        "[auth]",
        f"issuer = {json.dumps(issuer.issuer)}",
        f"jwks_file = {json.dumps(str(jwks))}",
        "[email]",
        'transport = "file"',
        f"file_dir = {json.dumps(str(path.parent / 'outbox'))}",
        "[security]",
        f"data_key_file = {json.dumps(str(path.parent / 'data-key'))}",
        "[worker]",
        "embedded = false",
        "[idempotency]",
        "stale_after_seconds = 1.0",
        "[providers.zoom]",
        f"account_id = {json.dumps(sim.account_id)}",
        f"client_id = {json.dumps(sim.client_id)}",
        f"client_secret = {json.dumps(sim.client_secret)}",
        f"api_url = {json.dumps(zoom_url)}",
        f"oauth_url = {json.dumps(zoom_url)}",
        'authentication_option = "signIn_sim"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the API exited with {process.returncode}"
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError("the API never became ready")


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")
class TestApiKilledMidProvisioning:
    async def test_restart_deletes_the_orphan_and_the_retry_makes_one_meeting(
        self, tmp_path: Path, postgres_database_url: str, issuer: LocalIssuer
    ) -> None:
        sim = ZoomSimulator(hang_seconds=8.0)  # longer than we wait; short for teardown
        sim.create_faults.push(FaultKind.HANG_AFTER_COMMIT)  # Zoom creates, then we die
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
        headers = {
            "Authorization": "Bearer "
            + issuer.token(
                subject="dana", email="dana@example.com", name="Dana", groups=["employees"]
            ),
            "Idempotency-Key": "calendar-event-1",
        }
        body: dict[str, Any] = meeting_body(provider="zoom")

        def start_api() -> subprocess.Popen[bytes]:
            return subprocess.Popen(  # noqa: S603 (our own CLI)
                [sys.executable, "-m", "provisioner", "serve", "--port", str(port)],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        with serve_asgi(sim) as zoom_url:
            env["PROVISIONER_CONFIG"] = str(
                config_file(
                    tmp_path / "api.toml",
                    database_url=postgres_database_url,
                    issuer=issuer,
                    zoom_url=zoom_url,
                    sim=sim,
                )
            )
            api = start_api()
            try:
                await wait_ready(url, api)
                async with httpx.AsyncClient(timeout=120.0) as client:
                    pending = asyncio.create_task(
                        client.post(f"{url}/api/v1/meetings", json=body, headers=headers)
                    )
                    deadline = time.monotonic() + 30
                    while not sim.meetings and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                    assert len(sim.meetings) == 1  # created at Zoom, not yet committed by us
                    api.send_signal(signal.SIGKILL)
                    api.wait(timeout=10)
                    with pytest.raises(httpx.TransportError):
                        await pending
                await asyncio.sleep(1.5)  # older than idempotency.stale_after_seconds
                api = start_api()  # start-up reconciliation runs here
                await wait_ready(url, api)
                assert sim.meetings == {} and len(sim.deleted) == 1  # the orphan is gone
                async with httpx.AsyncClient(timeout=60.0) as client:
                    retried = await client.post(
                        f"{url}/api/v1/meetings", json=body, headers=headers
                    )
                assert retried.status_code == 201, retried.text
                assert len(sim.meetings) == 1
            finally:
                if api.poll() is None:
                    api.send_signal(signal.SIGTERM)
                    api.wait(timeout=30)
        db = Database(create_engine(DatabaseSettings(url=postgres_database_url)))
        try:
            async with db.session() as session:
                states = sorted((await session.scalars(select(Meeting.state))).all())
        finally:
            await db.dispose()
        assert states == ["failed", "verified"]  # the interrupted attempt, then the retry
