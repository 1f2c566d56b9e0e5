"""Benchmark: start-up time of `provisioner serve` until `/readyz` answers 200.

Each run launches a fresh process with a demo-like configuration (SQLite in a temp dir,
Jitsi, file mail, the embedded worker on as `serve` defaults) and polls `/readyz` every
10 ms from the moment the process is spawned. Two cases: a first start (a new directory,
so the migrations create the database) and a restart (the database exists). The baseline,
in the same run: a bare FastAPI app with one route under uvicorn (bench/bare_app.py) --
the interpreter, FastAPI and uvicorn alone. We report median and max, and our median as a
multiple of the baseline's.

Run: `make bench` (or `.venv/bin/python -m bench.startup`); `BENCH_STARTS` sets the runs
per case (default 5).
"""

from __future__ import annotations

import base64
import os
import secrets
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.processes import app_config, clean_env, free_port, launch, stop, wait_for
from provisioner.auth.local_issuer import LocalIssuer

RUNS = int(os.environ.get("BENCH_STARTS", "5"))


def time_start(args: list[str], *, log: Path, env: dict[str, str] | None = None) -> float:
    """Seconds from spawning `python args` until its /readyz answers 200 (then stop it)."""
    port = free_port()
    process = launch([*args, "--port", str(port)], log=log, env=env)
    try:
        return wait_for(f"http://127.0.0.1:{port}/readyz", process, poll=0.01)
    finally:
        stop(process)


def ours(directory: Path, *, fresh: bool) -> float:
    if fresh:
        for stale in directory.iterdir():
            if stale.is_file():
                stale.unlink()
    issuer = LocalIssuer(issuer="https://idp.bench.invalid")
    config = app_config(
        directory,
        database_url=f"sqlite+aiosqlite:///{directory / 'provisioner.db'}",
        issuer=issuer,
        jitsi_secret=base64.b64encode(secrets.token_bytes(32)).decode(),
        embedded_worker=True,
        log_format="console",
    )
    return time_start(
        ["-m", "provisioner", "serve"],
        log=directory.parent / "serve.log",
        env=clean_env(PROVISIONER_CONFIG=str(config)),
    )


def summary(name: str, samples: list[float], baseline: float | None) -> str:
    median = statistics.median(samples)
    ratio = f"{median / baseline:>8.1f}x" if baseline else f"{'':>9}"
    return f"{name:<46}{median:>9.2f}{max(samples):>9.2f}{ratio}"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "provisioner"
        home.mkdir()
        cases: dict[str, Callable[[], float]] = {
            "bare FastAPI app, one route (baseline)": lambda: time_start(
                ["-m", "bench.bare_app"], log=root / "bare.log"
            ),
            "provisioner serve, first start (migrates)": lambda: ours(home, fresh=True),
            "provisioner serve, restart (database exists)": lambda: ours(home, fresh=False),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(RUNS):  # interleaved, so a noisy moment hits every case alike
            for name, run in cases.items():
                samples[name].append(run())
    baseline = statistics.median(samples["bare FastAPI app, one route (baseline)"])
    print(f"\nStart-up until /readyz answers 200, {RUNS} runs each (seconds)")
    print(f"{'what':<46}{'median':>9}{'max':>9}{'ratio':>9}")
    for name, values in samples.items():
        print(summary(name, values, None if "baseline" in name else baseline))


if __name__ == "__main__":
    main()
