"""Benchmark: `GET /api/v1/meetings` with 100,000 meetings in the database.

The host's list is keyset-paginated on (created_at, id) with an index on
(host_subject, created_at), so a page should cost the same on page 1 and page 500. We
measure p50/p95 of the whole request through the app (auth, query, serialisation), in
process, next to the bare SQL query the endpoint runs (the floor), in the same run, on
SQLite and -- when BENCH_DATABASE_URL is set -- PostgreSQL. That database is emptied and
filled with 100,000 meetings: never point it at one you care about.

Run: `make bench` (or `.venv/bin/python -m bench.list_meetings`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from provisioner.app import build_state, close_state, create_app
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.meetings.models import Invitee, Meeting
from provisioner.migrate import upgrade_async
from provisioner.settings import Settings

MEETINGS = int(os.environ.get("BENCH_MEETINGS", "100000"))
HOSTS = 50  # the caller owns MEETINGS / HOSTS of them; the rest belong to others
SAMPLES = 200
REPO_ROOT = Path(__file__).resolve().parent.parent


async def seed(settings: Settings) -> None:
    state = build_state(settings)
    try:
        start = datetime(2030, 1, 1, tzinfo=UTC)
        batch: list[dict[str, Any]] = []
        invitees: list[dict[str, Any]] = []
        async with state.db.session() as session:
            await session.execute(text("DELETE FROM invitees"))
            await session.execute(text("DELETE FROM meetings"))
        for n in range(MEETINGS):
            meeting_id = str(uuid.uuid4())
            host = f"host{n % HOSTS}"
            batch.append(
                {
                    "id": meeting_id,
                    "host_subject": host,
                    "host_email": f"{host}@example.com",
                    "host_name": host,
                    "topic": f"Meeting {n}",
                    "provider": "jitsi",
                    "state": "delivered",
                    "starts_at": start + timedelta(minutes=n),
                    "ends_at": start + timedelta(minutes=n + 30),
                    "timezone": "Europe/Berlin",
                    "settings": {},
                    "enforced": [],
                    "not_enforced": [],
                    "reference": {},
                    "ics_uid": f"{meeting_id}@provisioner",
                    "sequence": 0,
                    "created_at": start + timedelta(seconds=n),
                    "updated_at": start,
                }
            )
            invitees.append(
                {
                    "id": str(uuid.uuid4()),
                    "meeting_id": meeting_id,
                    "position": 0,
                    "email": f"guest{n}@example.com",
                    "name": "Guest",
                    "personal_link": True,
                    "channel": "email",
                }
            )
            if len(batch) == 5000:
                async with state.db.session() as session:
                    await session.execute(insert(Meeting), batch)
                    await session.execute(insert(Invitee), invitees)
                batch, invitees = [], []
        if batch:
            async with state.db.session() as session:
                await session.execute(insert(Meeting), batch)
                await session.execute(insert(Invitee), invitees)
    finally:
        await close_state(state)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


async def measure(settings: Settings, issuer: LocalIssuer) -> dict[str, tuple[float, float]]:
    state = build_state(settings)
    app = create_app(settings, state=state, run_worker=False)
    token = issuer.token(
        subject="host7", email="host7@example.com", name="Host", groups=["employees"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    results: dict[str, tuple[float, float]] = {}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            first: list[float] = []
            deep: list[float] = []
            cursor = None
            for _ in range(SAMPLES):
                started = time.perf_counter()
                page = await client.get("/api/v1/meetings?limit=50", headers=headers)
                first.append((time.perf_counter() - started) * 1000)
                assert page.status_code == 200, page.text
                cursor = cursor or page.json()["next_cursor"]
            for _ in range(SAMPLES):  # walk forward through the host's 2,000 meetings
                started = time.perf_counter()
                page = await client.get(
                    f"/api/v1/meetings?limit=50&cursor={cursor}", headers=headers
                )
                deep.append((time.perf_counter() - started) * 1000)
                cursor = page.json()["next_cursor"] or cursor
        floor: list[float] = []
        query = text(
            "SELECT id FROM meetings WHERE host_subject = :host "
            "ORDER BY created_at DESC, id DESC LIMIT 51"
        )
        for _ in range(SAMPLES):
            started = time.perf_counter()
            async with state.db.session() as session:
                (await session.execute(query, {"host": "host7"})).all()
            floor.append((time.perf_counter() - started) * 1000)
        results["GET /api/v1/meetings (first page)"] = percentiles(first)
        results["GET /api/v1/meetings (later pages)"] = percentiles(deep)
        results["floor: the bare keyset query"] = percentiles(floor)
    finally:
        await close_state(state)
    return results


async def run(url: str, directory: Path) -> dict[str, tuple[float, float]]:
    issuer = LocalIssuer(issuer="https://idp.bench.invalid")
    settings = Settings(
        database={"url": url},
        auth={"issuer": issuer.issuer, "jwks_file": issuer.write_jwks(directory / "j.json")},
        security={"data_key_file": directory / "data-key"},
        policy_file=REPO_ROOT / "config" / "policy.yaml",
        worker={"embedded": False},
        api={"write_rate_per_minute": 100_000, "write_burst": 100_000},
    )
    await upgrade_async(url)
    await seed(settings)
    return await measure(settings, issuer)


def main() -> None:
    backends = {"sqlite": None, "postgresql": os.environ.get("BENCH_DATABASE_URL")}
    print(
        f"\nList meetings with {MEETINGS:,} meetings in the database "
        f"({MEETINGS // HOSTS:,} the caller's), {SAMPLES} requests each, in process"
    )
    print(f"{'backend':<12}{'what':<40}{'p50 ms':>9}{'p95 ms':>9}")
    for name, url in backends.items():
        with tempfile.TemporaryDirectory() as tmp:
            if name == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            if url is None:
                print(f"{name:<12}skipped: BENCH_DATABASE_URL is not set")
                continue
            for what, (p50, p95) in asyncio.run(run(url, Path(tmp))).items():
                print(f"{name:<12}{what:<40}{p50:>9.2f}{p95:>9.2f}")


if __name__ == "__main__":
    main()
