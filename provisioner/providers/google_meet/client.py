"""Google Calendar and Meet over `ProviderHttp`, acting as each host through delegation.

Tokens: the service account signs a JWT (RS256, `iss` = its email, `sub` = the user it
acts for, `scope`, `aud` = the token URI) and trades it for an access token with the JWT
bearer grant. A token is good for one user only, so `DelegatedAuth` keeps one
`CachedTokenAuth` per user; which user a request is for travels in a context variable set
by `GoogleClient` around each call (one client, one connection pool, many users).

Calls, all from the derived OpenAPI files in ../shared/specs/google:

    POST   /calendars/{cal}/events?conferenceDataVersion=1&sendUpdates=none
    GET | PATCH | DELETE /calendars/{cal}/events/{id}
    GET    /v2/spaces/{space or meeting code}
    PATCH  /v2/spaces/{space}?updateMask=...
    POST   /v2/spaces/{space}:endActiveConference
    GET    /v2/conferenceRecords?filter=space.name="spaces/..."
    GET    /v2/conferenceRecords/{record}/participants

Google errors are `{"error": {"code", "message", "status", "errors": [{reason, location}]}}`;
`google_error` maps them (a 403 rate limit is retried like a 429).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import structlog

from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderRetriable,
)
from provisioner.providers.google_meet.config import SCOPES, GoogleMeetConfig, ServiceAccountKey
from provisioner.providers.http import (
    AccessToken,
    CachedTokenAuth,
    ProviderHttp,
    RetryPolicy,
    TokenFetcher,
    parse_retry_after,
    token_response_body,
)
from provisioner.redaction import scrub_text

log = structlog.get_logger(__name__)

PROVIDER_NAME = "google_meet"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600  # the longest Google accepts
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
MAX_CACHED_USERS = 1024
_MAX_PAGES = 20

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_acting_for: ContextVar[str | None] = ContextVar("google_meet_acting_for", default=None)

JsonObject = dict[str, Any]


def safe_message(text: object) -> str:
    """A provider message fit for an error: no URLs, no token-like strings, bounded."""
    if not isinstance(text, str):
        return ""
    return scrub_text(_URL.sub("[url]", text)).replace("\n", " ").strip()[:200]


def safe_code(value: object) -> str | None:
    """An error code or enum value we may repeat (short identifier characters only)."""
    return value if isinstance(value, str) and _CODE.match(value) else None


def google_error(response: httpx.Response) -> ProviderError | None:
    """Map a final Google 4xx to a typed error (ProviderHttp handles 429 and 5xx)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    items = [e for e in error.get("errors") or [] if isinstance(e, dict)]
    reasons = {r for r in (safe_code(e.get("reason")) for e in items) if r}
    location = next((loc for loc in (safe_code(e.get("location")) for e in items) if loc), None)
    label = safe_code(error.get("status")) or ", ".join(sorted(reasons))
    where = f"{PROVIDER_NAME}: Google answered {status}" + (f" {label}" if label else "")
    if status == 403 and reasons & RATE_LIMIT_REASONS:
        return ProviderRetriable(
            where,
            provider=PROVIDER_NAME,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status == 401:
        return ProviderAuthFailed(
            f"{where}: the delegated token was refused", provider=PROVIDER_NAME
        )
    if status == 403:
        return ProviderAuthFailed(
            f"{where}: domain-wide delegation does not grant a needed scope, the API is not "
            "enabled, or the user does not own this meeting",
            provider=PROVIDER_NAME,
        )
    if status in (404, 410):
        return ProviderNotFound(f"{where}: no such event or space", provider=PROVIDER_NAME)
    message = safe_message(error.get("message"))
    return ProviderRejected(
        f"{where}: {message}" if message else where, provider=PROVIDER_NAME, field=location
    )


def token_from_response(response: httpx.Response, *, clock: Callable[[], float]) -> AccessToken:
    """Parse Google's token answer; errors name the OAuth error code, never a description."""
    status = response.status_code
    body = token_response_body(response, provider=PROVIDER_NAME)
    if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
        code = safe_code(body.get("error")) if isinstance(body, dict) else None
        hint = (
            "; authorise the client id for every scope in Admin console > Domain-wide delegation"
            if code == "unauthorized_client"
            else ""
        )
        raise ProviderAuthFailed(
            f"{PROVIDER_NAME}: token request refused ({status}{', ' + code if code else ''}){hint}",
            provider=PROVIDER_NAME,
        )
    lifetime = body.get("expires_in")
    # Google always sends it; guessing a lifetime would reuse a token past its end.
    try:
        seconds = float(lifetime) if isinstance(lifetime, int | float | str) else None
    except ValueError:
        seconds = None
    if seconds is None or isinstance(lifetime, bool):
        raise ProviderError(
            f"{PROVIDER_NAME}: token response has no usable expires_in", provider=PROVIDER_NAME
        )
    return AccessToken(value=str(body["access_token"]), expires_at=clock() + seconds)


def jwt_bearer(
    key: ServiceAccountKey,
    *,
    subject: str,
    scopes: tuple[str, ...] = SCOPES,
    clock: Callable[[], float] = time.time,
) -> TokenFetcher:
    """Fetch a token for `subject` with a freshly signed assertion (RFC 7523)."""

    async def fetch(client: httpx.AsyncClient) -> AccessToken:
        now = int(clock())
        assertion = jwt.encode(
            {
                "iss": key.client_email,
                "sub": subject,
                "scope": " ".join(scopes),
                "aud": key.token_uri,
                "iat": now,
                "exp": now + ASSERTION_SECONDS,
            },
            key.private_key,
            algorithm="RS256",
            headers={"kid": key.key_id},
        )
        # auth=None: the token request must not go through the bearer auth it feeds.
        response = await client.request(
            "POST",
            key.token_uri,
            auth=None,
            data={"grant_type": JWT_BEARER, "assertion": assertion},
        )
        return token_from_response(response, clock=clock)

    return fetch


class DelegatedAuth(httpx.Auth):
    """Bearer auth for whichever user the current call acts for (see the module docstring)."""

    def __init__(
        self,
        fetcher_for: Callable[[str], TokenFetcher],
        *,
        client: Callable[[], httpx.AsyncClient],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetcher_for = fetcher_for
        self._client = client
        self._clock = clock
        self._users: OrderedDict[str, CachedTokenAuth] = OrderedDict()

    def for_user(self, user: str) -> CachedTokenAuth:
        auth = self._users.get(user)
        if auth is None:
            auth = CachedTokenAuth(self._fetcher_for(user), client=self._client, clock=self._clock)
            self._users[user] = auth
            while len(self._users) > MAX_CACHED_USERS:
                self._users.popitem(last=False)
        self._users.move_to_end(user)
        return auth

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        user = _acting_for.get()
        if user is None:
            raise RuntimeError("google_meet: no user to act for was set for this call")
        flow = self.for_user(user).async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return


def _seg(value: str) -> str:
    return quote(value, safe="@")


def _json(response: httpx.Response) -> JsonObject:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"{PROVIDER_NAME}: answered {response.status_code} without a JSON object",
            provider=PROVIDER_NAME,
        )
    return body


class GoogleClient:
    """Calendar and Meet calls for one Workspace, acting as the user each call names.

    Args:
        config: the validated `[providers.google_meet]` settings.
        auth: replaces the delegated auth (tests use a fixed token with Prism).
        transport: where requests go (tests: the simulator's ASGI app).
    """

    def __init__(
        self,
        config: GoogleMeetConfig,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rand: Callable[[], float] = random.random,  # noqa: S311 (jitter only)
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = config.load_key()
        self._calendar = config.calendar_base
        self._meet = config.meet_base
        self._retry = retry or RetryPolicy()
        self._rand = rand
        self.sleep = sleep
        self.auth = auth or DelegatedAuth(
            lambda user: jwt_bearer(key, subject=user, clock=clock),
            client=lambda: self._http.client,
            clock=clock,
        )
        # No base URL: Calendar and Meet live on different hosts, so URLs are absolute.
        self._http = ProviderHttp(
            PROVIDER_NAME,
            base_url="",
            auth=self.auth,
            transport=transport,
            timeout=httpx.Timeout(connect=5.0, read=config.timeout_seconds, write=10.0, pool=5.0),
            retry=self._retry,
            map_error=google_error,
            rand=rand,
            sleep=sleep,
        )

    async def _send(
        self,
        user: str,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send as `user`; every call routed here is safe to repeat, so a bare 500 is
        retried too (ProviderHttp leaves that to the caller, since a create may have
        happened: ours carry a client-chosen event id and requestId, so it cannot twice)."""
        marker = _acting_for.set(user)
        try:
            return await self._http.request(
                method, url, json=json, params=params, expect=expect, repeat_safe=True
            )
        finally:
            _acting_for.reset(marker)

    def _events(self, calendar_id: str) -> str:
        return f"{self._calendar}/calendars/{_seg(calendar_id)}/events"

    async def insert_event(self, user: str, calendar_id: str, body: JsonObject) -> JsonObject:
        """Insert the event with our id; if a previous attempt made it (409), adopt it."""
        response = await self._send(
            user,
            "POST",
            self._events(calendar_id),
            json=body,
            params={"conferenceDataVersion": 1, "sendUpdates": "none"},
            expect=(200, 409),
        )
        if response.status_code == 409:
            log.info("provider.create_adopted", provider=PROVIDER_NAME)
            return await self.get_event(user, calendar_id, str(body["id"]))
        return _json(response)

    async def get_event(self, user: str, calendar_id: str, event_id: str) -> JsonObject:
        return _json(await self._send(user, "GET", f"{self._events(calendar_id)}/{_seg(event_id)}"))

    async def patch_event(
        self, user: str, calendar_id: str, event_id: str, body: JsonObject
    ) -> JsonObject:
        return _json(
            await self._send(
                user,
                "PATCH",
                f"{self._events(calendar_id)}/{_seg(event_id)}",
                json=body,
                params={"conferenceDataVersion": 1, "sendUpdates": "none"},
            )
        )

    async def delete_event(self, user: str, calendar_id: str, event_id: str) -> None:
        """Delete without Google mailing anyone; an event already gone (404/410) is fine."""
        await self._send(
            user,
            "DELETE",
            f"{self._events(calendar_id)}/{_seg(event_id)}",
            params={"sendUpdates": "none"},
            expect=(200, 204, 404, 410),
        )

    async def get_space(self, user: str, space: str) -> JsonObject:
        """A space by id or by meeting code (Meet accepts the code as an alias here only)."""
        return _json(await self._send(user, "GET", f"{self._meet}/v2/spaces/{_seg(space)}"))

    async def patch_space(
        self, user: str, space_id: str, body: JsonObject, update_mask: str
    ) -> JsonObject:
        return _json(
            await self._send(
                user,
                "PATCH",
                f"{self._meet}/v2/spaces/{_seg(space_id)}",
                json=body,
                params={"updateMask": update_mask},
            )
        )

    async def end_active_conference(self, user: str, space_id: str) -> None:
        await self._send(
            user, "POST", f"{self._meet}/v2/spaces/{_seg(space_id)}:endActiveConference", json={}
        )

    async def _pages(
        self, user: str, url: str, params: dict[str, Any], key: str
    ) -> list[JsonObject]:
        items: list[JsonObject] = []
        for _ in range(_MAX_PAGES):
            page = _json(await self._send(user, "GET", url, params=params))
            values = page.get(key)
            if isinstance(values, list):
                items.extend(v for v in values if isinstance(v, dict))
            token = page.get("nextPageToken")
            if not isinstance(token, str) or not token or token == params.get("pageToken"):
                break  # done, or a server repeating itself
            params = params | {"pageToken": token}
        return items

    async def conference_records(self, user: str, space_name: str) -> list[JsonObject]:
        return await self._pages(
            user,
            f"{self._meet}/v2/conferenceRecords",
            {"filter": f'space.name = "{space_name}"'},
            "conferenceRecords",
        )

    async def participants(self, user: str, record_id: str) -> list[JsonObject]:
        return await self._pages(
            user,
            f"{self._meet}/v2/conferenceRecords/{_seg(record_id)}/participants",
            {},
            "participants",
        )

    async def aclose(self) -> None:
        await self._http.aclose()
