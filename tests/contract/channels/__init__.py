"""Contract tests of the chat channels against Prism, and the transport they share.

`RecordingTransport` sits between a channel and Prism: it keeps every request (so tests
assert the exact body sent) and every response (so tests assert Prism found no violation
in the request). It can answer some requests itself (the OAuth token endpoint, which is
not in the Graph spec) and rewrite a response after Prism has validated the request
(Prism's canned answers cannot describe every case, e.g. an IM conversation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

Rewrite = Callable[[httpx.Request, Any], Any]
LocalHandler = Callable[[httpx.Request], httpx.Response | None]


@dataclass(frozen=True)
class Exchange:
    request: httpx.Request
    response: httpx.Response

    @property
    def path(self) -> str:
        return self.request.url.path

    def json(self) -> Any:
        return json.loads(self.request.content)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forward to `inner`, record each exchange, optionally answer or rewrite some."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        local: LocalHandler | None = None,
        rewrite: Rewrite | None = None,
    ) -> None:
        self._inner = inner
        self._local = local
        self._rewrite = rewrite
        self.exchanges: list[Exchange] = []
        self.local_requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if self._local is not None:
            answer = self._local(request)
            if answer is not None:
                self.local_requests.append(request)
                return answer
        response = await self._inner.handle_async_request(request)
        await response.aread()
        if self._rewrite is not None and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            original = json.loads(response.content)
            changed = self._rewrite(request, original)
            if changed is not original:
                headers = [
                    (key, value)
                    for key, value in response.headers.multi_items()
                    if key.lower() not in {"content-length", "content-encoding", "content-type"}
                ]
                response = httpx.Response(response.status_code, headers=headers, json=changed)
        self.exchanges.append(Exchange(request=request, response=response))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
