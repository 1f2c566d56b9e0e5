"""The shared provider HTTP policy: what is retried, how long it waits, when it stops."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderRetriable,
)
from provisioner.providers.http import (
    ONE_ATTEMPT,
    AccessToken,
    CachedTokenAuth,
    Circuit,
    ProviderHttp,
    RetryPolicy,
    parse_retry_after,
)


def scripted(
    *responses: httpx.Response | Exception,
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def client(transport: httpx.MockTransport, sleeps: list[float], **kwargs: Any) -> ProviderHttp:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return ProviderHttp(
        "test",
        base_url="https://api.test",
        transport=transport,
        rand=lambda: 1.0,
        sleep=sleep,
        **kwargs,
    )


class TestRetries:
    async def test_retries_429_and_503_honouring_retry_after(self) -> None:
        transport, seen = scripted(
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503),
            httpx.Response(201, json={"id": 1}),
        )
        sleeps: list[float] = []
        response = await client(transport, sleeps).request("POST", "/meetings", json={})
        assert response.status_code == 201
        assert len(seen) == 3
        assert sleeps == [3.0, 1.0]  # Retry-After, then base 0.5 * 2 ** 1 * rand(1.0)

    async def test_timeouts_are_retried_then_surface_as_retriable(self) -> None:
        transport, seen = scripted(*[httpx.ReadTimeout("slow") for _ in range(4)])
        sleeps: list[float] = []
        with pytest.raises(ProviderRetriable):
            await client(transport, sleeps).request("GET", "/meetings/1?token=secret")
        assert len(seen) == 4 and len(sleeps) == 3

    @pytest.mark.parametrize(
        ("status", "error"),
        [
            (400, ProviderRejected),
            (401, ProviderAuthFailed),
            (403, ProviderAuthFailed),
            (404, ProviderNotFound),
            (500, ProviderError),
        ],
    )
    async def test_final_statuses_are_not_retried(
        self, status: int, error: type[ProviderError]
    ) -> None:
        transport, seen = scripted(httpx.Response(status))
        with pytest.raises(error) as caught:
            await client(transport, []).request("POST", "/meetings?access_token=secret")
        assert len(seen) == 1
        assert "secret" not in str(caught.value)

    async def test_a_bare_500_is_retried_only_for_repeat_safe_calls(self) -> None:
        transport, seen = scripted(httpx.Response(500), httpx.Response(200))
        response = await client(transport, []).request("GET", "/meetings/1", repeat_safe=True)
        assert response.status_code == 200 and len(seen) == 2

    async def test_one_attempt_override_never_retries(self) -> None:
        transport, seen = scripted(httpx.Response(503), httpx.Response(201))
        with pytest.raises(ProviderRetriable):
            await client(transport, []).request("POST", "/meetings", retry=ONE_ATTEMPT)
        assert len(seen) == 1

    async def test_write_once_adopts_what_the_failed_attempt_created(self) -> None:
        transport, seen = scripted(httpx.Response(500))
        http = client(transport, [])
        found: list[str] = []

        async def write() -> str:
            await http.request("POST", "/meetings", retry=ONE_ATTEMPT)
            return "written"

        async def find() -> str | None:
            found.append("looked")
            return "adopted"

        assert await http.write_once("create", write, find) == "adopted"
        assert len(seen) == 1 and found == ["looked"]

    async def test_error_mapper_can_name_the_field(self) -> None:
        def mapper(response: httpx.Response) -> ProviderError | None:
            return ProviderRejected("bad password", provider="test", field="password")

        transport, _ = scripted(httpx.Response(400, json={"code": 300}))
        with pytest.raises(ProviderRejected) as caught:
            await client(transport, [], map_error=mapper).request("POST", "/meetings")
        assert caught.value.field == "password"


class TestCircuit:
    async def test_opens_after_repeated_failures_and_fails_fast(self) -> None:
        now = [0.0]
        circuit = Circuit(threshold=2, cooldown_seconds=10, clock=lambda: now[0])
        transport, seen = scripted(httpx.Response(503), httpx.Response(503), httpx.Response(200))
        http = client(transport, [], circuit=circuit, retry=RetryPolicy(max_attempts=5))
        with pytest.raises(ProviderRetriable):
            await http.request("GET", "/x")
        assert len(seen) == 2
        with pytest.raises(ProviderRetriable) as caught:
            await http.request("GET", "/x")
        assert len(seen) == 2 and caught.value.retry_after == 10
        now[0] = 11.0
        assert (await http.request("GET", "/x")).status_code == 200


class TestRetryAfter:
    def test_seconds_and_http_dates(self) -> None:
        now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert parse_retry_after("120") == 120.0
        assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=lambda: now) == 30.0
        assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=lambda: now) == 0.0
        assert parse_retry_after("soon") is None
        assert parse_retry_after(None) is None


class TestCachedTokenAuth:
    async def test_token_is_reused_until_expiry_and_refreshed_once_on_401(self) -> None:
        clock = [1000.0]
        issued: list[str] = []

        async def fetch(_: httpx.AsyncClient) -> AccessToken:
            issued.append(f"t{len(issued) + 1}")
            return AccessToken(value=issued[-1], expires_at=clock[0] + 3600)

        statuses = iter([200, 200, 401, 200, 200])
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers["Authorization"])
            return httpx.Response(next(statuses))

        holder: list[httpx.AsyncClient] = []
        get_client: Callable[[], httpx.AsyncClient] = lambda: holder[0]  # noqa: E731
        auth = CachedTokenAuth(fetch, client=get_client, clock=lambda: clock[0])
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(handler), auth=auth, base_url="https://api.test"
        ) as http:
            holder.append(http)
            await http.get("/a")
            await http.get("/b")
            assert (await http.get("/c")).status_code == 200  # 401 then refreshed
            clock[0] += 3600
            await http.get("/d")
        assert seen == ["Bearer t1", "Bearer t1", "Bearer t1", "Bearer t2", "Bearer t3"]
        assert auth.fetches == 3
