"""Several workers, several processes, an SMTP relay that goes away: nothing lost, nothing twice.

- Two `provisioner worker` processes against one PostgreSQL database deliver 500 messages,
  each exactly once (counted by the delivery id every message carries).
- The SMTP relay is down while the worker runs, then comes back on the same port: every
  message is delivered, none is dead-lettered or duplicated.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from provisioner.app import build_state, close_state, create_app
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.transports import DELIVERY_ID_HEADER
from provisioner.delivery.worker import DeliveryWorker
from provisioner.settings import Settings
from tests.conftest import PG_ENV, make_settings
from tests.factories import meeting_body
from tests.support.smtp import (
    HOST,
    PasswordAuthenticator,
    RecordingHandler,
    TlsFiles,
    server_tls_context,
    start_server,
)

pytest_plugins = ("tests.support.smtp",)

REPO_ROOT = Path(__file__).resolve().parents[3]


def toml_value(value: Any) -> str:
    return json.dumps(str(value)) if isinstance(value, Path) else json.dumps(value)


def write_config(path: Path, settings: Settings, jitsi: dict[str, Any], **worker: Any) -> Path:
    """The settings a worker process reads (PROVISIONER_CONFIG), as TOML."""
    lines = [
        f"policy_file = {toml_value(settings.policy_file)}",
        "[database]",
        f"url = {toml_value(settings.database.url)}",
        "[auth]",
        f"issuer = {toml_value(settings.auth.issuer)}",
        f"jwks_file = {toml_value(settings.auth.jwks_file)}",
        "[email]",
        'transport = "file"',
        f"file_dir = {toml_value(settings.email.file_dir)}",
        "[security]",
        f"data_key_file = {toml_value(settings.security.data_key_file)}",
        "[worker]",
        "poll_interval_seconds = 0.1",
        "batch_size = 10",
        *[f"{key} = {toml_value(value)}" for key, value in worker.items()],
        "[providers.jitsi]",
        *[f"{key} = {toml_value(value)}" for key, value in jitsi.items()],
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")
class TestTwoWorkerProcesses:
    async def test_500_deliveries_each_sent_exactly_once(
        self,
        tmp_path: Path,
        postgres_database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
    ) -> None:
        settings = make_settings(tmp_path, postgres_database_url, issuer, jitsi_config)
        state = build_state(settings)
        app = create_app(settings, state=state, run_worker=False)
        invitees = [{"email": f"p{i}@example.com", "name": f"P{i}"} for i in range(4)]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            for n in range(100):  # 100 meetings x (4 invitees + host) = 500 messages
                response = await client.post(
                    "/api/v1/meetings",
                    json=meeting_body(topic=f"M{n}", invitees=invitees),
                    headers=host_headers,
                )
                assert response.status_code == 201
        # A lease shorter than the wait: a worker that stalls mid-batch has its rows taken
        # over by the other, which is what the lease is for. "Exactly once" below still
        # holds: `_still_ours` renews the lease before each send.
        config = write_config(tmp_path / "worker.toml", settings, jitsi_config, lease_seconds=15.0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
        env["PROVISIONER_CONFIG"] = str(config)
        # Each worker's log goes to a file. It went to a pipe read only at the end: a worker
        # that logged more than the pipe holds (64 KiB, about 250 deliveries) blocked in
        # the middle of `_record`, its row locked, which the other worker's SKIP LOCKED
        # claim then skipped for good -- one delivery "stuck", seen on loaded machines.
        logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
        workers = []
        for log in logs:
            with log.open("wb") as sink:
                workers.append(
                    subprocess.Popen(  # noqa: S603 (our own CLI)
                        [sys.executable, "-m", "provisioner", "worker"],
                        env=env,
                        cwd=REPO_ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=sink,
                    )
                )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                async with state.db.session() as session:
                    unsent = await session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.status != DeliveryStatus.SENT)
                    )
                if unsent == 0:
                    break
                assert all(w.poll() is None for w in workers), "a worker died"
                await asyncio.sleep(0.5)
            # What is left, if anything: enough to tell a slow run from a stuck delivery.
            async with state.db.session() as session:
                left = (
                    await session.execute(
                        select(
                            Delivery.status,
                            Delivery.attempts,
                            Delivery.next_attempt_at,
                            Delivery.lease_until,
                            Delivery.claimed_by,
                            Delivery.last_error,
                        ).where(Delivery.status != DeliveryStatus.SENT)
                    )
                ).all()
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
            errors = [log.read_text(errors="replace") for log in logs]
            await close_state(state)
        problems = [line for e in errors for line in e.splitlines() if "[info" not in line]
        assert unsent == 0, (left, problems)
        parser = BytesParser(policy=email_policy.default)
        ids = collections.Counter(
            str(parser.parsebytes(path.read_bytes())[DELIVERY_ID_HEADER])
            for path in settings.email.file_dir.glob("*.eml")
        )
        assert len(ids) == 500
        assert set(ids.values()) == {1}
        assert all(w.returncode == 0 for w in workers), errors


class FixedPortController(Controller):
    """aiosmtpd on a port chosen beforehand, so a relay can 'come back' where it was."""

    def __init__(self, handler: RecordingHandler, port: int, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=port, server_hostname="smtp.test", **kwargs)


class TestSmtpOutage:
    async def test_relay_down_then_back_loses_nothing(
        self,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
        tls_files: TlsFiles,
    ) -> None:
        probe = start_server(tls_files, mode="starttls")
        smtp = probe.settings()
        probe.controller.stop()  # the relay is down from here on
        settings = make_settings(
            tmp_path,
            database_url,
            issuer,
            jitsi_config,
            email={"transport": "smtp", "smtp": smtp.model_dump(), "sender": "m@example.com"},
        )
        state = build_state(settings)
        app = create_app(settings, state=state, run_worker=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            for n in range(10):
                response = await client.post(
                    "/api/v1/meetings", json=meeting_body(topic=f"M{n}"), headers=host_headers
                )
                assert response.status_code == 201
        worker = DeliveryWorker(
            state.db,
            state.channels,
            cipher=state.cipher,
            settings=settings.worker,
            worker_id="w",
            rand=lambda: 0.0,
        )
        handler = RecordingHandler()
        controller = FixedPortController(
            handler,
            smtp.port,
            authenticator=PasswordAuthenticator(),
            tls_context=server_tls_context(tls_files),
            require_starttls=True,
            auth_required=True,
        )
        try:
            first = await worker.run_once()
            assert first.claimed > 0 and first.sent == 0 and first.retried == first.claimed
            controller.start()  # the relay is back
            await worker.drain()
        finally:
            controller.stop()
            await close_state(state)
        async with state.db.session() as session:
            statuses = (await session.scalars(select(Delivery.status))).all()
        assert collections.Counter(statuses) == {"sent": 40}
        assert len(handler.messages) == 40
        assert handler.connections <= 3  # one connection reused, not one per message


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")
class TestWorkerKilledMidBatch:
    async def test_sigkill_loses_nothing_and_repeats_at_most_the_batch_in_hand(
        self,
        tmp_path: Path,
        postgres_database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
    ) -> None:
        settings = make_settings(tmp_path, postgres_database_url, issuer, jitsi_config)
        state = build_state(settings)
        app = create_app(settings, state=state, run_worker=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            for n in range(100):  # 400 messages
                response = await client.post(
                    "/api/v1/meetings", json=meeting_body(topic=f"M{n}"), headers=host_headers
                )
                assert response.status_code == 201
        config = write_config(tmp_path / "worker.toml", settings, jitsi_config, lease_seconds=2.0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
        env["PROVISIONER_CONFIG"] = str(config)

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(  # noqa: S603 (our own CLI)
                [sys.executable, "-m", "provisioner", "worker"],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        async def sent() -> int:
            async with state.db.session() as session:
                return int(
                    await session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.status == DeliveryStatus.SENT)
                    )
                    or 0
                )

        victim = start()
        try:
            deadline = time.monotonic() + 60
            while await sent() < 60 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            victim.send_signal(signal.SIGKILL)  # mid-batch: no chance to record anything
            victim.wait(timeout=10)
            successor = start()
            try:
                deadline = time.monotonic() + 120
                while await sent() < 400 and time.monotonic() < deadline:
                    await asyncio.sleep(0.3)
            finally:
                successor.send_signal(signal.SIGTERM)
                successor.wait(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
            await close_state(state)
        parser = BytesParser(policy=email_policy.default)
        ids = collections.Counter(
            str(parser.parsebytes(path.read_bytes())[DELIVERY_ID_HEADER])
            for path in settings.email.file_dir.glob("*.eml")
        )
        assert await sent() == 400  # nothing lost
        assert len(ids) == 400
        # At-least-once: only what the killed worker had sent but not yet recorded can go
        # out twice, and that is at most the batch it held (batch_size = 10).
        assert sum(count - 1 for count in ids.values()) <= 10
