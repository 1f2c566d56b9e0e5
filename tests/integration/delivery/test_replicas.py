"""Scale-out: two API processes and two workers on one PostgreSQL take 1,000 meeting requests
-- some retried with the same Idempotency-Key, some sent as concurrent duplicates to both
APIs -- and produce exactly 1,000 meetings and exactly one message per person per meeting.

The result is printed (run with -s to see it), as issue 8 asks.
"""

from __future__ import annotations

import asyncio
import collections
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
from sqlalchemy import func, select

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.db import Database, create_engine
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.transports import DELIVERY_ID_HEADER
from provisioner.meetings.models import Meeting
from provisioner.settings import DatabaseSettings
from tests.conftest import PG_ENV, make_settings
from tests.factories import meeting_body
from tests.integration.delivery.test_scale_out import REPO_ROOT, write_config
from tests.support.live import free_port

REQUESTS = 1000
RETRIED_EVERY = 10  # every 10th request is sent again with the same key
DUPLICATED_EVERY = 20  # every 20th is sent to both APIs at the same moment
INVITEES = [{"email": f"p{i}@example.com", "name": f"P{i}"} for i in range(2)]


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run the CLI; its output goes to `log` (a pipe nobody reads would fill and block)."""
    with log.open("wb") as sink:
        return subprocess.Popen(  # noqa: S603 (our own CLI)
            [sys.executable, "-m", "provisioner", *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"exited with {process.returncode}"
            try:
                if (await client.get(f"{base_url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{base_url} never became ready")


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} is not set")
class TestTwoApisTwoWorkers:
    async def test_1000_requests_make_1000_meetings_and_one_message_each(
        self,
        tmp_path: Path,
        postgres_database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
    ) -> None:
        settings = make_settings(tmp_path, postgres_database_url, issuer, jitsi_config)
        config = write_config(tmp_path / "replica.toml", settings, jitsi_config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
        env.update(
            PROVISIONER_CONFIG=str(config),
            PROVISIONER_WORKER__EMBEDDED="false",
            PROVISIONER_API__WRITE_RATE_PER_MINUTE="100000",
            PROVISIONER_API__WRITE_BURST="100000",
            PROVISIONER_LOG_LEVEL="WARNING",
        )
        ports = [free_port(), free_port()]
        apis = [
            spawn(["serve", "--port", str(p), "--no-upgrade"], env, tmp_path / f"api{p}.log")
            for p in ports
        ]
        workers = [spawn(["worker"], env, tmp_path / f"worker{n}.log") for n in range(2)]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        headers = {
            "Authorization": "Bearer "
            + issuer.token(
                subject="dana", email="dana@example.com", name="Dana", groups=["employees"]
            )
        }
        started = time.monotonic()
        try:
            for url, api in zip(urls, apis, strict=True):
                await wait_ready(url, api)
            limits = httpx.Limits(max_connections=16)
            async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
                gate = asyncio.Semaphore(16)

                bodies = [meeting_body(topic=f"M{n}", invitees=INVITEES) for n in range(REQUESTS)]

                async def post(url: str, n: int) -> httpx.Response:
                    async with gate:  # a retry sends the very same body with the same key
                        return await client.post(
                            f"{url}/api/v1/meetings",
                            json=bodies[n],
                            headers=headers | {"Idempotency-Key": f"request-{n}"},
                        )

                async def one(n: int) -> list[httpx.Response]:
                    url = urls[n % 2]
                    if n % DUPLICATED_EVERY == 0:  # the same request to both APIs at once
                        return list(await asyncio.gather(post(urls[0], n), post(urls[1], n)))
                    first = await post(url, n)
                    if n % RETRIED_EVERY == 0:  # the client never saw the answer: retries
                        return [first, await post(urls[(n + 1) % 2], n)]
                    return [first]

                answers = await asyncio.gather(*(one(n) for n in range(REQUESTS)))
            requested_in = time.monotonic() - started
            by_key = collections.defaultdict(set)
            for n, responses in enumerate(answers):
                for response in responses:
                    assert response.status_code == 201, response.text
                    by_key[n].add(response.json()["id"])
            assert all(len(ids) == 1 for ids in by_key.values())  # one meeting per request

            db = Database(create_engine(DatabaseSettings(url=postgres_database_url)))
            deadline = time.monotonic() + 240
            try:
                while True:
                    async with db.session() as session:
                        unsent = await session.scalar(
                            select(func.count())
                            .select_from(Delivery)
                            .where(Delivery.status != DeliveryStatus.SENT)
                        )
                        meetings = await session.scalar(select(func.count()).select_from(Meeting))
                        deliveries = await session.scalar(
                            select(func.count()).select_from(Delivery)
                        )
                    if unsent == 0 or time.monotonic() > deadline:
                        break
                    assert all(w.poll() is None for w in workers), "a worker died"
                    await asyncio.sleep(0.5)
            finally:
                await db.dispose()
            delivered_in = time.monotonic() - started
        finally:
            for process in apis + workers:
                process.send_signal(signal.SIGTERM)
            for process in apis + workers:
                process.communicate(timeout=60)

        parser = BytesParser(policy=email_policy.default)
        sent = collections.Counter(
            str(parser.parsebytes(p.read_bytes())[DELIVERY_ID_HEADER])
            for p in settings.email.file_dir.glob("*.eml")
        )
        expected = REQUESTS * (len(INVITEES) + 1)
        print(
            f"\nscale-out: 2 APIs + 2 workers, {REQUESTS} requests "
            f"({sum(len(a) for a in answers)} HTTP calls incl. retries and duplicates): "
            f"{meetings} meetings, {deliveries} deliveries, {len(sent)} messages, "
            f"max per delivery {max(sent.values())}; requests done in {requested_in:.1f} s, "
            f"all delivered in {delivered_in:.1f} s"
        )
        assert meetings == REQUESTS
        assert deliveries == expected and unsent == 0
        assert len(sent) == expected and set(sent.values()) == {1}
        assert all(p.returncode == 0 for p in workers)
