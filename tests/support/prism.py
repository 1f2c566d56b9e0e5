"""Stoplight Prism serving a provider's official API spec on a loopback port.

Prism validates every request against the spec and reports violations in the
`sl-violations` response header; contract tests fail on any. The binary comes from
`tests/node` (`npm ci` there; `make test` and `.ci/run` do it). Without node the tests skip
with a reason -- and under CI=true a skip fails the run.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS = REPO_ROOT.parent / "shared" / "specs"
PRISM = REPO_ROOT / "tests" / "node" / "node_modules" / ".bin" / "prism"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PrismServer:
    base_url: str
    spec: Path


def require_prism(spec: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: Prism contract tests need it")
    if not PRISM.exists():
        pytest.skip(f"{PRISM} is missing: run `npm ci` in tests/node")
    if not spec.exists():
        pytest.skip(f"{spec} is missing: the specs live in ../shared/specs")


@contextmanager
def prism(
    spec: Path, *, dynamic: bool = False, startup_seconds: float = 60.0
) -> Iterator[PrismServer]:
    """Run `prism mock` for `spec` until the block ends."""
    require_prism(spec)
    port = free_port()
    args = [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec)]
    if dynamic:
        args.insert(2, "-d")
    # Its output goes to a file, not a pipe: Prism logs every request, and a pipe nobody
    # reads until the end fills (64 KiB) and then blocks the server mid-test.
    log = tempfile.TemporaryFile()  # closed in `finally`
    process = subprocess.Popen(  # noqa: S603 (our own pinned binary, our arguments)
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"prism exited early for {spec.name}:\n{output[-2000:]}")
            try:
                httpx.get(base_url + "/__health__", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prism did not start for {spec.name}") from None
                time.sleep(0.25)
        yield PrismServer(base_url=base_url, spec=spec)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def violations(response: httpx.Response) -> list[dict[str, Any]]:
    """Prism's complaints about *our request* (tests assert there are none).

    Prism also reports where the vendor's own canned example breaks the vendor's schema
    (Webex's examples do); those are about the response, not about us, and are dropped.
    """
    header = response.headers.get("sl-violations")
    if not header:
        # A spec that declares no error response (Google's) gets Prism's own 422 problem,
        # with the violations in its body rather than in the header.
        if response.status_code == 422 and response.headers.get("content-type", "").startswith(
            "application/problem+json"
        ):
            problems: list[dict[str, Any]] = response.json().get("validation", [])
            return problems or [{"location": ["request"], "message": response.text[:500]}]
        return []
    found: list[dict[str, Any]] = json.loads(header)
    return [v for v in found if v.get("location", [None])[0] == "request"]
