"""What every HTTP-based provider shares: timeouts, one retry policy, a circuit, OAuth tokens.

- `RetryPolicy` decides from the outcome alone: connect errors, timeouts, 429 and
  502/503/504 are retried; nothing else is (a 500 may follow a create that happened).
  `Retry-After` is honoured in seconds or as an HTTP date; without it the delay is
  full-jitter exponential up to a cap. The random source
  is injectable so tests are deterministic.
- `Circuit` opens after `threshold` consecutive failures and refuses calls for `cooldown`
  seconds, so a provider outage fails fast instead of queueing every request behind timeouts.
- `CachedTokenAuth` is an `httpx.Auth` that fetches an OAuth access token once, reuses it
  until shortly before it expires, and fetches a new one once if the provider answers 401.
- `ProviderHttp.request` ties them together and maps failures to typed `ProviderError`s.
  A create's idempotency key is fixed by the caller before the first attempt, so every retry
  sends the same one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport

from provisioner.observability.metrics import counts_provider_errors
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderRetriable,
)

log = structlog.get_logger(__name__)

RETRIABLE_STATUS = frozenset({429, 502, 503, 504})

T = TypeVar("T")


def ambiguous(error: ProviderError) -> bool:
    """Whether a failed write may nonetheless have happened (timeouts, 429, any 5xx)."""
    return isinstance(error, ProviderRetriable) or type(error) is ProviderError


def default_timeout() -> httpx.Timeout:
    """Every provider call has a limit for each phase; none waits forever."""
    return httpx.Timeout(connect=5.0, read=15.0, write=10.0, pool=5.0)


class ProviderTransport(AiohttpTransport):
    """httpx's API over aiohttp's connection pool: the transport every provider client uses.

    Chosen by measurement (bench/provision.py; ../shared/DESIGN.md, Performance notes):
    under concurrency httpx's default transport was the bottleneck of provisioning --
    with six provider calls per meeting, the floor endpoint managed about 30 requests/s
    at concurrency 16 and 64, fewer than at concurrency 1. httpx's timeouts still apply
    (connect, read, and pool as aiohttp's connect). aiohttp errors the library does not
    translate become `httpx.TransportError`s here, so the retry policy sees every network
    failure as one, and the message names the type only (an aiohttp message can quote the
    URL, whose query may carry a token).
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(type(exc).__name__, request=request) from exc


def provider_transport() -> httpx.AsyncBaseTransport:
    """The transport every provider client uses unless a test passes its own."""
    return ProviderTransport()


def parse_retry_after(
    value: str | None, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = (now or (lambda: datetime.now(UTC)))()
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    max_retry_after_seconds: float = 30.0

    def delay(self, attempt: int, *, retry_after: float | None, rand: Callable[[], float]) -> float:
        """Delay before attempt `attempt + 1`; the server's Retry-After wins when given."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_seconds)
        return min(self.cap_seconds, self.base_seconds * 2.0 ** (attempt - 1)) * rand()


ONE_ATTEMPT = RetryPolicy(max_attempts=1)


class Circuit:
    """Consecutive-failure circuit breaker (closed -> open -> half-open on the next call)."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def open(self) -> bool:
        if self._opened_at is None:
            return False
        if self._clock() - self._opened_at >= self._cooldown:
            return False  # half-open: let the next call probe
        return True

    def remaining(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float


TokenFetcher = Callable[[httpx.AsyncClient], Awaitable[AccessToken]]


class CachedTokenAuth(httpx.Auth):
    """Bearer auth with a token cached until `skew_seconds` before expiry; refresh once on 401.

    `fetch` obtains a token (client credentials, JWT bearer grant...) using the client it is
    given; it must raise `ProviderAuthFailed` when the credentials are refused.
    """

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        client: Callable[[], httpx.AsyncClient],
        skew_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._client = client
        self._skew = skew_seconds
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _current(self, *, replacing: str | None = None) -> str:
        """The token to send; a new one if it is about to expire or is `replacing` (the one
        a 401 refused). Calls running at the same time that all get that 401 fetch once:
        the first replaces it, the others find it already replaced."""
        async with self._lock:
            stale = self._token is None or self._token.expires_at - self._skew <= self._clock()
            if stale or (self._token is not None and self._token.value == replacing):
                self._token = await self._fetch(self._client())
                self.fetches += 1
            assert self._token is not None  # noqa: S101 (set just above)
            return self._token.value

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = await self._current()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self._current(replacing=sent)}"
            yield request


def token_response_body(response: httpx.Response, *, provider: str) -> dict[str, Any] | None:
    """The first step every token endpoint answer goes through, whoever the provider.

    Raises ProviderRetriable (with Retry-After) when the endpoint is throttling or down;
    otherwise returns the JSON object body, or None when there is none. What a refusal
    means, and which error code may be shown, is each caller's own business.
    """
    status = response.status_code
    if status in RETRIABLE_STATUS or status >= 500:
        raise ProviderRetriable(
            f"{provider}: token endpoint answered {status}",
            provider=provider,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


ErrorMapper = Callable[[httpx.Response], ProviderError | None]


class ProviderHttp:
    """One provider's HTTP client: base URL, auth, timeouts, retries, circuit, error mapping.

    `map_error` may turn a provider-specific error body into a typed error (for example
    naming the rejected field); when it returns None the status decides.
    """

    def __init__(
        self,
        provider: str,
        *,
        base_url: str,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        circuit: Circuit | None = None,
        map_error: ErrorMapper | None = None,
        rand: Callable[[], float] = random.random,  # noqa: S311 (jitter, not secrecy)
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.client = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            transport=transport or provider_transport(),
            timeout=timeout or default_timeout(),
            headers=dict(headers or {}),
        )
        self._retry = retry or RetryPolicy()
        self._circuit = circuit or Circuit()
        self._map_error = map_error
        self._rand = rand
        self._sleep = sleep

    @counts_provider_errors
    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
        retry: RetryPolicy | None = None,
        repeat_safe: bool = False,
    ) -> httpx.Response:
        """Send with retries; return the response whose status is in `expect`.

        `retry` overrides the client's policy for this call (`ONE_ATTEMPT` for a write
        that `write_once` guards). `repeat_safe` says the call gives the same result however
        often it runs (a read, a delete, a createOrGet by external id), so a bare 500 is
        retried too; otherwise a 500 is final, because a create may have happened.

        Raises:
            ProviderRetriable: still failing after the last attempt, or the circuit is open.
            ProviderRejected / ProviderAuthFailed / ProviderNotFound: a final 4xx.
        """
        if self._circuit.open:
            raise ProviderRetriable(
                f"{self.provider} circuit is open after repeated failures",
                provider=self.provider,
                retry_after=self._circuit.remaining(),
            )
        policy = retry or self._retry
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await self.client.request(
                    method, url, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:  # timeouts, refused, reset, protocol errors
                error: ProviderError = ProviderRetriable(
                    f"{self.provider} {method} {_path(url)}: {type(exc).__name__}",
                    provider=self.provider,
                )
            else:
                if response.status_code in expect:
                    self._circuit.record_success()
                    return response
                error = self._error_for(response, method, url)
                if response.status_code < 500 and not isinstance(error, ProviderRetriable):
                    self._circuit.record_success()  # the provider is up; we were wrong
                    raise error
                if not isinstance(error, ProviderRetriable) and not repeat_safe:
                    self._circuit.record_failure()
                    raise error
                if isinstance(error, ProviderRetriable):
                    retry_after = error.retry_after
            self._circuit.record_failure()
            if attempt >= policy.max_attempts or self._circuit.open:
                raise error
            delay = policy.delay(attempt, retry_after=retry_after, rand=self._rand)
            log.warning(
                "provider.retry_scheduled",
                provider=self.provider,
                method=method,
                path=_path(url),
                attempt=attempt,
                delay_seconds=round(delay, 2),
                error_type=type(error).__name__,
            )
            await self._sleep(delay)

    async def write_once(
        self,
        operation: str,
        write: Callable[[], Awaitable[T]],
        find: Callable[[], Awaitable[T | None]],
    ) -> T:
        """Run a non-idempotent write (a create) so that retries never duplicate it.

        `write` must send with `retry=ONE_ATTEMPT`. After an ambiguous failure (timeout,
        429, any 5xx: the write may have happened) wait as the retry policy says, honouring
        Retry-After, then look for the result with `find` (the caller's own marker); adopt
        it if it is there, else write again. After the last attempt the error stands.
        """
        attempt = 0
        while True:
            attempt += 1
            if self._circuit.open:
                raise ProviderRetriable(
                    f"{self.provider} circuit is open after repeated failures",
                    provider=self.provider,
                    retry_after=self._circuit.remaining(),
                )
            try:
                return await write()
            except ProviderError as error:
                if not ambiguous(error):
                    raise
                log.warning(
                    "provider.write_outcome_unknown",
                    provider=self.provider,
                    operation=operation,
                    attempt=attempt,
                    error_type=type(error).__name__,
                )
                retry_after = error.retry_after if isinstance(error, ProviderRetriable) else None
                await self._sleep(
                    self._retry.delay(attempt, retry_after=retry_after, rand=self._rand)
                )
                found = await find()
                if found is not None:
                    log.info(
                        "provider.write_adopted",
                        provider=self.provider,
                        operation=operation,
                        attempt=attempt,
                    )
                    return found
                if attempt >= self._retry.max_attempts:
                    raise

    def _error_for(self, response: httpx.Response, method: str, url: str) -> ProviderError:
        status = response.status_code
        where = f"{self.provider} {method} {_path(url)} answered {status}"
        if status in RETRIABLE_STATUS:
            return ProviderRetriable(
                where,
                provider=self.provider,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500:
            # A 500 may come after the provider acted: not retried blindly (a create could
            # happen twice); the caller decides, e.g. by looking the meeting up first.
            return ProviderError(where, provider=self.provider)
        mapped = self._map_error(response) if self._map_error else None
        if mapped is not None:
            return mapped
        if status in (401, 403):
            return ProviderAuthFailed(where, provider=self.provider)
        if status == 404:
            return ProviderNotFound(where, provider=self.provider)
        return ProviderRejected(where, provider=self.provider)

    async def aclose(self) -> None:
        await self.client.aclose()


def _path(url: str) -> str:
    """The path only: query strings can carry tokens and never reach a log or an error."""
    return url.split("?", 1)[0]
