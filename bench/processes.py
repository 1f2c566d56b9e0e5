"""Separate server processes for the benchmarks: start on 127.0.0.1, wait until they
answer, stop them (and only them) afterwards.

Each server runs in its own process so it has its own event loop and GIL, as in
production; the load generator in the bench process then measures over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from provisioner.auth.local_issuer import LocalIssuer

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without PROVISIONER_* (a developer's own settings must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    env.update(extra)
    return env


def launch(
    args: Sequence[str], *, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `python args...` from the repository root, its output in `log`."""
    with log.open("ab") as sink:
        return subprocess.Popen(  # noqa: S603 (our own modules, fixed arguments)
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=env or clean_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_for(
    url: str, process: subprocess.Popen[bytes], *, timeout: float = 60.0, poll: float = 0.05
) -> float:
    """Poll `url` until it answers 200; returns the seconds waited. Fails if the process dies."""
    started = time.perf_counter()
    deadline = started + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with {process.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(poll)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it lingers: never leave a server behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def running(
    args: Sequence[str], *, ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = launch(args, log=log, env=env)
    try:
        wait_for(ready_url, process)
        yield process
    finally:
        stop(process)


def app_config(
    directory: Path,
    *,
    database_url: str,
    issuer: LocalIssuer,
    zoom_url: str | None = None,
    jitsi_secret: str | None = None,
    embedded_worker: bool = False,
    log_format: str = "json",
) -> Path:
    """A `provisioner serve` configuration in `directory` (SQLite or the given database).

    The embedded worker is off by default: delivery has its own benchmark, and in the
    provisioning one it would compete for the CPU and the SQLite connection.
    """
    jwks = issuer.write_jwks(directory / "jwks.json")
    lines = [
        f"policy_file = {json.dumps(str(REPO_ROOT / 'config' / 'policy.yaml'))}",
        f"log_format = {json.dumps(log_format)}",
        "[database]",
        f"url = {json.dumps(database_url)}",
        "[auth]",
        f"issuer = {json.dumps(issuer.issuer)}",
        f"jwks_file = {json.dumps(str(jwks))}",
        "[email]",
        'transport = "file"',
        f"file_dir = {json.dumps(str(directory / 'outbox'))}",
        'sender = "Meetings <meetings@example.com>"',
        "[security]",
        f"data_key_file = {json.dumps(str(directory / 'data-key'))}",
        "[worker]",
        f"embedded = {json.dumps(embedded_worker)}",
        "[api]",
        "write_rate_per_minute = 10000000",
        "write_burst = 10000000",
    ]
    if zoom_url is not None:
        lines = ['default_provider = "zoom"', *lines]
        lines += [
            "[providers.zoom]",
            'account_id = "bench-account"',
            'client_id = "bench-client"',
            'client_secret = "bench-secret"',
            f"api_url = {json.dumps(zoom_url)}",
            f"oauth_url = {json.dumps(zoom_url)}",
            'authentication_option = "signIn_bench"',
        ]
    if jitsi_secret is not None:
        lines += [
            "[providers.jitsi]",
            'base_url = "https://meet.example.com"',
            'app_id = "provisioner-bench"',
            'domain = "meet.example.com"',
            f"app_secret = {json.dumps(jitsi_secret)}",
        ]
    path = directory / "provisioner.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def scratch_postgres(url: str, *names: str) -> Iterator[list[str]]:
    """Fresh, empty PostgreSQL databases on `url`'s server, one per name, dropped after.

    The database `url` names is left alone: the benchmark never writes into a database a
    developer may use, and each run starts from the same empty state.
    """
    server = make_url(url)
    suffix = secrets.token_hex(4)
    databases = [f"bench_{name}_{suffix}" for name in names]

    async def run(statements: list[str]) -> None:
        engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                for statement in statements:
                    await connection.execute(text(statement))
        finally:
            await engine.dispose()

    try:  # inside: if the second CREATE fails, the first database is dropped too
        asyncio.run(run([f'CREATE DATABASE "{name}"' for name in databases]))
        yield [
            server.set(database=name).render_as_string(hide_password=False) for name in databases
        ]
    finally:
        asyncio.run(run([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in databases]))
