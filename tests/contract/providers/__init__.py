"""Contract tests for the hosted providers, and the helpers they share.

`RecordingTransport` sits between a provider's client and the real network transport (to
Prism on 127.0.0.1): it keeps every exchange -- method, path, query, the exact JSON body
sent, the status and Prism's request violations -- so a test can assert both "Prism saw
nothing wrong" and "this is precisely what we sent" (Prism lets unknown properties by).
Paths listed in `local` are answered in-process instead (an OAuth token endpoint that
the provider's spec does not describe).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.prism import violations


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    status: int
    violations: list[dict[str, Any]] = field(default_factory=list)


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        local: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._inner = inner
        self._local = dict(local or {})
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "127.0.0.1", "contract tests never leave this machine"
        raw = await request.aread()
        if request.url.path in self._local:
            return httpx.Response(200, json=self._local[request.url.path], request=request)
        response = await self._inner.handle_async_request(request)
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.url.path,
                query=dict(request.url.params),
                content_type=request.headers.get("content-type", ""),
                body=json.loads(raw) if raw else None,
                status=response.status_code,
                violations=violations(response),
            )
        )
        return response

    def find(self, method: str, path_start: str, path_end: str = "") -> list[Exchange]:
        return [
            e
            for e in self.exchanges
            if e.method == method and e.path.startswith(path_start) and e.path.endswith(path_end)
        ]

    def problems(self) -> list[tuple[str, str, int, list[dict[str, Any]]]]:
        """Every exchange Prism complained about or answered with an error."""
        return [
            (e.method, e.path, e.status, e.violations)
            for e in self.exchanges
            if e.violations or e.status >= 400
        ]

    async def aclose(self) -> None:
        await self._inner.aclose()
