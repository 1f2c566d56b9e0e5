"""Vault behind a proxy that answers 502, 504, 429 or 401 with an HTML page.

OpenBao itself never answers like that, so a small HTTP server on 127.0.0.1 stands in for
the proxy: what is tested is our mapping of those answers. Each must be an outage the
cache rides out on its cached value (`degraded`), not an exception that ends the
background refresh (it ended the loop for good) or a traceback at start-up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from provisioner.secrets.base import SecretRef, SecretUnavailable
from provisioner.secrets.cache import CachingSecretStore
from provisioner.secrets.vault import VaultSecretStore
from provisioner.settings import VaultSettings

SECRET = {"data": {"data": {"f": "the-secret-value"}, "metadata": {"destroyed": False}}}


class Proxy(ThreadingHTTPServer):
    """Answers as Vault would (status 200) or as a failing proxy (any other status)."""

    status = 200


class Handler(BaseHTTPRequestHandler):
    server: Proxy

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        if self.server.status != 200:
            self.send_response(self.server.status)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>bad gateway</html>")
            return
        body = {"data": {"ttl": 0}} if "lookup-self" in self.path else SECRET
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = Proxy(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def dev_token(_reference: str) -> str:
    return "dev-token"


def vault(proxy: Proxy) -> VaultSecretStore:
    address = f"http://127.0.0.1:{proxy.server_address[1]}"
    settings = VaultSettings(address=address, auth="token", token="env:VAULT_TOKEN")
    return VaultSecretStore(settings, bootstrap=dev_token)


@pytest.mark.parametrize("status", [502, 504, 429, 401])
async def test_a_proxy_error_is_an_outage_the_cache_rides_out(proxy: Proxy, status: int) -> None:
    clock = [0.0]
    store = CachingSecretStore(
        {"vault": vault(proxy)}, ttl_seconds=10, max_stale_seconds=100, clock=lambda: clock[0]
    )
    ref = SecretRef.parse("vault:kv/app#f")
    assert await store.get(ref) == "the-secret-value"
    proxy.status, clock[0] = status, 20.0  # past the TTL, within max_stale

    assert await store.refresh() == set()  # no exception: the refresh loop lives on
    assert store.status().state == "degraded"
    assert await store.get(ref) == "the-secret-value"  # the cached value still serves
    await store.aclose()


async def test_a_proxy_error_at_the_first_read_is_secret_unavailable(proxy: Proxy) -> None:
    proxy.status = 502
    store = vault(proxy)
    with pytest.raises(SecretUnavailable, match="answered BadGateway"):
        await store.get(SecretRef.parse("vault:kv/app#f"))
    await store.aclose()
