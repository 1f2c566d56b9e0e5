"""Benchmark: `POST /api/v1/meetings` throughput and latency next to the floor.

Three processes on 127.0.0.1 besides this one: a Zoom-shaped provider simulator with a
fixed injected latency (bench/provider_sim.py), the real app (`provisioner serve`, embedded
worker off) and the floor (bench/floor_app.py: the same provider calls through the same
kind of client plus one insert), on SQLite, then on PostgreSQL when `BENCH_DATABASE_URL`
names a server. The load generator here is asyncio + aiohttp. For
each latency (0 and 200 ms) and concurrency (1, 16, 64) the floor and ours are loaded in
turn for a fixed time, and we report throughput, p50/p99, our p50 overhead in ms and our
throughput as a ratio of the floor's.

Targets: p50 overhead at most 5 ms (judged at concurrency 1, where latency is not
queueing), throughput at least 70% of the floor at concurrency 64. Every server shares the
machine's cores with the load generator (and with whatever else runs): read the ratios.

Each cell alternates floor and ours `BENCH_ROUNDS` times (default 3) and pools the rounds,
so that a slow spell of the shared VM falls on both sides of the ratio.

Run: `make bench` (or `.venv/bin/python -m bench.provision`); `BENCH_SECONDS` sets the
seconds per turn (default 3), `BENCH_LATENCIES` and `BENCH_CONCURRENCY` pick cells
(comma-separated; defaults `0,200` and `1,16,64`), `BENCH_MODES` the databases (default
`sqlite,postgresql`). On PostgreSQL, ours and the floor each get a scratch database on
`BENCH_DATABASE_URL`'s server, created for the run and dropped after it (the database the
URL names is not touched).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.processes import app_config, clean_env, free_port, running, scratch_postgres
from provisioner.auth.local_issuer import LocalIssuer

LATENCIES_MS = tuple(int(ms) for ms in os.environ.get("BENCH_LATENCIES", "0,200").split(","))
CONCURRENCY = tuple(int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,16,64").split(","))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MODES = tuple(os.environ.get("BENCH_MODES", "sqlite,postgresql").split(","))
OVERHEAD_TARGET_MS = 5.0
RATIO_TARGET = 0.70


@dataclass(frozen=True)
class Result:
    """One measurement cell: successful requests only count towards rate and latency."""

    requests: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]
    cpu_seconds: float | None = None  # the server process's CPU time over the cell

    @classmethod
    def pooled(cls, rounds: list[Result]) -> Result:
        """Several rounds of one cell as one measurement: every request and second counts."""
        cpu = [r.cpu_seconds for r in rounds]
        return cls(
            requests=sum(r.requests for r in rounds),
            errors=sum(r.errors for r in rounds),
            seconds=sum(r.seconds for r in rounds),
            latencies_ms=tuple(ms for r in rounds for ms in r.latencies_ms),
            cpu_seconds=None if None in cpu else sum(c for c in cpu if c is not None),
        )

    @property
    def cpu_ms(self) -> float:
        """The server's CPU time per successful request, in ms (nan where unknown)."""
        return 1000 * self.cpu_seconds / self.requests if self.cpu_seconds else float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]


@dataclass(frozen=True)
class Target:
    """Where to send one kind of request."""

    url: str
    headers: dict[str, str]
    idempotent: bool  # ours: a fresh Idempotency-Key per request, as calendar systems send
    pid: int | None = None  # the server process, to read its CPU time (Linux /proc)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process `pid` so far, or None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_body() -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    return {
        "topic": "Quarterly planning",
        "start": start.isoformat(),
        "duration_minutes": 45,
        "timezone": "Europe/Berlin",
        "provider": "zoom",
        "invitees": [{"email": "ana@example.com", "name": "Ana Lima"}],
    }


async def post(session: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> float:
    """One request; returns its latency in ms, or raises if it did not answer 201."""
    headers = dict(target.headers)
    if target.idempotent:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    started = time.perf_counter()
    async with session.post(target.url, json=body, headers=headers) as response:
        text = await response.text()
        if response.status != 201:
            raise RequestFailed(f"{target.url} answered {response.status}: {text[:300]}")
    return (time.perf_counter() - started) * 1000


class RequestFailed(Exception):
    """A request that did not create a meeting (counted, and shown once)."""


def new_session(concurrency: int) -> aiohttp.ClientSession:
    """A client with its own connections: one per simulated client, none left idle long
    enough for the server to close it under us (uvicorn drops idle ones after 5 s)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def load(target: Target, *, concurrency: int, seconds: float) -> Result:
    """`concurrency` closed-loop clients for `seconds` (after one warm-up request each)."""
    async with new_session(concurrency) as session:
        return await _load(session, target, concurrency=concurrency, seconds=seconds)


async def _load(
    session: aiohttp.ClientSession, target: Target, *, concurrency: int, seconds: float
) -> Result:
    body = request_body()
    latencies: list[float] = []
    failures: list[RequestFailed] = []

    async def client(deadline: float) -> None:
        while time.perf_counter() < deadline:
            try:
                latencies.append(await post(session, target, body))
            except RequestFailed as failure:
                failures.append(failure)

    await asyncio.gather(*(post(session, target, body) for _ in range(concurrency)))
    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(client(started + seconds) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(target.pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if failures:
        print(f"  {len(failures)} failed, e.g. {failures[0]}", file=sys.stderr)
    if not latencies:
        raise RuntimeError(f"{target.url}: no request succeeded")
    return Result(len(latencies), len(failures), elapsed, tuple(latencies), cpu)


async def calls_per_request(
    session: aiohttp.ClientSession, target: Target, provider_url: str, *, samples: int = 5
) -> float:
    """Provider calls one request makes, counted by the simulator over a few requests."""
    await post(session, target, request_body())  # the first may fetch a token
    async with session.get(f"{provider_url}/_bench/stats") as response:
        before = (await response.json())["calls"]
    for _ in range(samples):
        await post(session, target, request_body())
    async with session.get(f"{provider_url}/_bench/stats") as response:
        after = (await response.json())["calls"]
    return float(after - before) / samples


def row(mode: str, latency: int, c: int, ours: Result, floor: Result) -> str:
    return (
        f"{mode:<11}{latency:>6} ms{c:>5}{ours.rate:>9.1f}{ours.p50:>9.1f}{ours.p99:>9.1f}"
        f"{floor.rate:>10.1f}{floor.p50:>9.1f}{ours.p50 - floor.p50:>10.1f}"
        f"{ours.rate / floor.rate:>8.2f}{ours.cpu_ms:>8.1f}{floor.cpu_ms:>8.1f}"
        f"{ours.requests:>7}{ours.errors + floor.errors:>5}"
    )


Cell = tuple[str, int, int, Result, Result]  # mode, latency, concurrency, ours, floor


async def measure(mode: str, ours: Target, floor: Target, provider_url: str) -> list[Cell]:
    results: list[Cell] = []
    async with new_session(1) as session:
        mine = await calls_per_request(session, ours, provider_url)
        theirs = await calls_per_request(session, floor, provider_url)
        print(f"{mode:<11}provider calls per request: ours {mine:.1f}, floor {theirs:.1f}")
        for latency in LATENCIES_MS:
            async with session.put(f"{provider_url}/_bench/latency?ms={latency}") as response:
                response.raise_for_status()
            for c in CONCURRENCY:
                # Long provider latency leaves few samples at c=1 (a create waits for three
                # provider round trips, ~0.6 s at 200 ms): give it 6x the time, ~50
                # requests each, so the p50 difference is not two medians of 16 apart.
                seconds = SECONDS * (6 if latency and c == 1 else 1)
                # Floor and ours take turns, ROUNDS times: a neighbour slowing the VM for a
                # few seconds then slows both alike, where one long turn each would put
                # it all on one side of the ratio.
                floors, ours_rounds = [], []
                for _ in range(ROUNDS):
                    floors.append(await load(floor, concurrency=c, seconds=seconds))
                    ours_rounds.append(await load(ours, concurrency=c, seconds=seconds))
                floor_result, ours_result = Result.pooled(floors), Result.pooled(ours_rounds)
                results.append((mode, latency, c, ours_result, floor_result))
                print(row(mode, latency, c, ours_result, floor_result), flush=True)
    return results


def verdict(results: list[Cell]) -> list[str]:
    lines = []
    for mode, latency, c, ours, floor in results:
        if c == 1:
            overhead = ours.p50 - floor.p50
            met = "MET" if overhead <= OVERHEAD_TARGET_MS else "MISSED"
            lines.append(
                f"  {mode}: p50 overhead at {latency} ms, c=1: {overhead:.1f} ms "
                f"(target <= {OVERHEAD_TARGET_MS:.0f} ms): {met}"
            )
        if c == max(CONCURRENCY):
            ratio = ours.rate / floor.rate
            met = "MET" if ratio >= RATIO_TARGET else "MISSED"
            lines.append(
                f"  {mode}: throughput at {latency} ms, c={c}: {ratio:.2f} of the floor "
                f"(target >= {RATIO_TARGET:.2f}): {met}"
            )
            if met == "MISSED" and not (math.isnan(ours.cpu_ms) or math.isnan(floor.cpu_ms)):
                lines.append(cpu_budget(ours.cpu_ms, floor.cpu_ms))
    return lines


def cpu_budget(ours_ms: float, floor_ms: float) -> str:
    """What a missed ratio asks of our CPU per request.

    A server that saturates its one event loop (a provider answering at once) serves
    requests at the rate its CPU allows, so the ratio is the floor's CPU per request over
    ours: the target allows ours `floor / RATIO_TARGET`, and our own work (ours minus the
    floor) `floor / RATIO_TARGET - floor`. Printed in ms, so a miss reads as a budget.
    """
    allowed = floor_ms / RATIO_TARGET
    return (
        f"    CPU per request: ours {ours_ms:.2f} ms, the floor {floor_ms:.2f} ms; "
        f"{RATIO_TARGET:.2f} allows ours {allowed:.2f} ms: our own work is "
        f"{ours_ms - floor_ms:.2f} ms, its budget {allowed - floor_ms:.2f} ms"
    )


@contextmanager
def databases(mode: str, directory: Path) -> Iterator[tuple[str, str]]:
    """Empty databases for ours and the floor: SQLite files, or scratch PostgreSQL
    databases on BENCH_DATABASE_URL's server (created and dropped by this run)."""
    if mode == "sqlite":
        yield (
            f"sqlite+aiosqlite:///{directory / 'ours.db'}",
            f"sqlite+aiosqlite:///{directory / 'floor.db'}",
        )
        return
    with scratch_postgres(os.environ["BENCH_DATABASE_URL"], "ours", "floor") as (ours, floor):
        yield ours, floor


def run_mode(mode: str, directory: Path, issuer: LocalIssuer, token: str) -> list[Cell]:
    """Simulator, floor and app on `mode`'s databases; every cell measured against them."""
    sim_port, app_port, floor_port = free_port(), free_port(), free_port()
    provider_url = f"http://127.0.0.1:{sim_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    floor_url = f"http://127.0.0.1:{floor_port}"
    with databases(mode, directory) as (ours_db, floor_db):
        config = app_config(directory, database_url=ours_db, issuer=issuer, zoom_url=provider_url)
        sim_args = ["-m", "bench.provider_sim", "--port", str(sim_port)]
        floor_args = [
            "-m", "bench.floor_app", "--port", str(floor_port), "--provider-url", provider_url,
            "--database-url", floor_db,
        ]  # fmt: skip
        app_args = ["-m", "provisioner", "serve", "--port", str(app_port)]
        with (
            running(sim_args, ready_url=f"{provider_url}/_bench/stats", log=directory / "sim.log"),
            running(
                floor_args, ready_url=f"{floor_url}/docs", log=directory / "floor.log"
            ) as floor_process,
            running(
                app_args,
                ready_url=f"{app_url}/readyz",
                log=directory / "app.log",
                env=clean_env(PROVISIONER_CONFIG=str(config)),
            ) as app_process,
        ):
            results = asyncio.run(
                measure(
                    mode,
                    Target(
                        f"{app_url}/api/v1/meetings",
                        {"Authorization": f"Bearer {token}"},
                        idempotent=True,
                        pid=app_process.pid,
                    ),
                    Target(f"{floor_url}/floor", {}, idempotent=False, pid=floor_process.pid),
                    provider_url,
                )
            )
            check = httpx.get(f"{app_url}/readyz", timeout=10)
            if check.status_code != 200:
                print(f"the app is not ready after the run: {check.status_code}", file=sys.stderr)
    return results


def main() -> None:
    issuer = LocalIssuer(issuer="https://idp.bench.invalid")
    token = issuer.token(
        subject="bench-host", email="host@example.com", name="Bench Host", groups=["employees"]
    )
    print(
        f"\nProvisioning: POST /api/v1/meetings (Zoom simulator, 1 invitee, fresh "
        f"Idempotency-Key each) vs the floor, {ROUNDS} alternating turns of {SECONDS:.0f} s "
        "each per cell, "
        f"{os.cpu_count()} cores shared by simulator, app, floor and load generator"
    )
    print(
        f"{'mode':<11}{'latency':>9}{'c':>5}{'req/s':>9}{'p50':>9}{'p99':>9}"
        f"{'floor r/s':>10}{'fl. p50':>9}{'ovh p50':>10}{'ratio':>8}"
        f"{'cpu':>8}{'fl. cpu':>8}{'n':>7}{'err':>5}"
    )
    results: list[Cell] = []
    for mode in MODES:
        if mode == "postgresql" and not os.environ.get("BENCH_DATABASE_URL"):
            print(f"{mode:<11}skipped: BENCH_DATABASE_URL is not set")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results += run_mode(mode, Path(tmp), issuer, token)
    print(
        "(latencies in ms; ovh = our p50 minus the floor's; ratio = our req/s / floor's; "
        "cpu = the server process's CPU ms per request)"
    )
    print("targets:")
    for line in verdict(results):
        print(line)


if __name__ == "__main__":
    main()
