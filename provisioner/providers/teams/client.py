"""Microsoft Graph over `ProviderHttp`: the app's token and the few calls Teams needs.

Only the paths of the Graph v1.0 subset in ../shared/specs are used:

    POST   /users/{user}/onlineMeetings/createOrGet    create, idempotent by externalId
    GET    /users/{user}/onlineMeetings/{id}           read back (verify)
    PATCH  /users/{user}/onlineMeetings/{id}           meeting options, reschedule
    DELETE /users/{user}/onlineMeetings/{id}           cancel
    GET    /users/{user}/onlineMeetings?$filter=...    find the meeting behind an event
    GET    /users/{user}/onlineMeetings/{id}/attendanceReports
    POST/PATCH/DELETE /users/{user}/events[/{id}]      calendar-event mode

Graph answers errors as OData (`{"error": {"code", "message", "target", "details"}}`);
`graph_error` turns them into typed errors that name the rejected field where Graph says
which one. Messages are scrubbed: a Graph message may echo what we sent, and a `$filter`
carries a join URL.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
)
from provisioner.providers.http import (
    AccessToken,
    CachedTokenAuth,
    ProviderHttp,
    RetryPolicy,
    TokenFetcher,
    token_response_body,
)
from provisioner.providers.teams.config import TeamsConfig
from provisioner.redaction import scrub_text

log = structlog.get_logger(__name__)

PROVIDER_NAME = "teams"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_MESSAGE = 200
# A page cap so a misbehaving server cannot keep us paging forever.
_MAX_PAGES = 20

JsonObject = dict[str, Any]


def safe_message(text: object) -> str:
    """A provider message fit for an error: no URLs, no token-like strings, bounded."""
    if not isinstance(text, str):
        return ""
    cleaned = scrub_text(_URL.sub("[url]", text)).replace("\n", " ").strip()
    return cleaned[:_MAX_MESSAGE]


def safe_code(value: object) -> str | None:
    """An error code or enum value we may repeat (short identifier characters only)."""
    return value if isinstance(value, str) and _CODE.match(value) else None


def _odata_error(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """(code, scrubbed message, target) from an OData error body, tolerating junk."""
    try:
        body = response.json()
    except ValueError:
        return None, "", None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, "", None
    target = error.get("target")
    if not target:
        details = error.get("details")
        if isinstance(details, list):
            target = next(
                (d.get("target") for d in details if isinstance(d, dict) and d.get("target")), None
            )
    return (
        safe_code(error.get("code")),
        safe_message(error.get("message")),
        target if isinstance(target, str) and _CODE.match(target) else None,
    )


def graph_error(response: httpx.Response) -> ProviderError | None:
    """Map a final Graph 4xx to a typed error (ProviderHttp handles 429 and 5xx)."""
    status = response.status_code
    code, message, target = _odata_error(response)
    where = f"{PROVIDER_NAME}: Graph answered {status}" + (f" {code}" if code else "")
    if status == 401:
        return ProviderAuthFailed(f"{where}: the app token was refused", provider=PROVIDER_NAME)
    if status == 403:
        return ProviderAuthFailed(
            f"{where}: the app lacks OnlineMeetings.ReadWrite.All / Calendars.ReadWrite, or "
            "no application access policy covers this organizer",
            provider=PROVIDER_NAME,
        )
    if status in (404, 410):
        return ProviderNotFound(f"{where}: no such meeting", provider=PROVIDER_NAME)
    detail = f"{where}: {message}" if message else where
    return ProviderRejected(detail, provider=PROVIDER_NAME, field=target)


def token_from_response(
    response: httpx.Response, *, provider: str, clock: Callable[[], float]
) -> AccessToken:
    """Parse an OAuth 2.0 token response (RFC 6749 5.1/5.2) into an `AccessToken`.

    Raises:
        ProviderRetriable: the token endpoint is overloaded or down.
        ProviderAuthFailed: the credentials were refused; the message names the OAuth
            error code only, never the description (it can quote the client id).
    """
    status = response.status_code
    body = token_response_body(response, provider=provider)
    if status != 200 or not isinstance(body, dict):
        code = safe_code(body.get("error")) if isinstance(body, dict) else None
        raise ProviderAuthFailed(
            f"{provider}: token request refused ({status}{', ' + code if code else ''})",
            provider=provider,
        )
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise ProviderAuthFailed(
            f"{provider}: token response has no access_token", provider=provider
        )
    lifetime = body.get("expires_in")
    # Both Entra ID and Google always send it; guessing a lifetime would hide a broken
    # endpoint and reuse a token past its end.
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float | str):
        raise ProviderError(f"{provider}: token response has no expires_in", provider=provider)
    try:
        seconds = float(lifetime)
    except ValueError:
        raise ProviderError(
            f"{provider}: token response has a malformed expires_in", provider=provider
        ) from None
    return AccessToken(value=value, expires_at=clock() + seconds)


def client_credentials(
    config: TeamsConfig, *, clock: Callable[[], float] = time.time
) -> TokenFetcher:
    """The Entra ID client-credentials grant for Graph's `.default` scope."""

    async def fetch(client: httpx.AsyncClient) -> AccessToken:
        # auth=None: the token request must not go through the bearer auth it feeds.
        response = await client.request(
            "POST",
            config.token_url,
            auth=None,
            data={
                "client_id": config.client_id,
                "client_secret": config.client_secret.get_secret_value(),
                "scope": GRAPH_SCOPE,
                "grant_type": "client_credentials",
            },
        )
        return token_from_response(response, provider=PROVIDER_NAME, clock=clock)

    return fetch


def _seg(value: str) -> str:
    """One path segment; Graph meeting ids are base64 and may hold '=' or '/'."""
    return quote(value, safe="@")


def json_object(response: httpx.Response, provider: str) -> JsonObject:
    """The response's JSON object, or a typed error instead of a KeyError later."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"{provider}: answered {response.status_code} without a JSON object", provider=provider
        )
    return body


class GraphClient:
    """The Graph calls Teams needs, with the shared retry, circuit and token handling.

    Args:
        config: the validated `[providers.teams]` settings.
        auth: replaces the client-credentials auth (tests use a fixed token with Prism).
        transport: where requests go (tests: the simulator's ASGI app).
    """

    def __init__(
        self,
        config: TeamsConfig,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rand: Callable[[], float] = random.random,  # noqa: S311 (jitter only)
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._base = config.graph_base
        self._rand = rand
        self._sleep = sleep
        self.auth = auth or CachedTokenAuth(
            client_credentials(config, clock=clock), client=lambda: self._http.client, clock=clock
        )
        self._http = ProviderHttp(
            PROVIDER_NAME,
            base_url=config.graph_base,
            auth=self.auth,
            transport=transport,
            timeout=httpx.Timeout(connect=5.0, read=config.timeout_seconds, write=10.0, pool=5.0),
            retry=self._retry,
            map_error=graph_error,
            rand=rand,
            sleep=sleep,
        )

    async def _repeatable(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> httpx.Response:
        """Send a call that is safe to repeat, retrying a bare 500 as well.

        ProviderHttp does not retry a 500 because a create may have happened; the calls
        routed here (createOrGet by externalId, reads, PATCHes to fixed values, deletes)
        give the same result however often they run, so a 500 is worth another try.
        """
        return await self._http.request(
            method, url, json=json, params=params, expect=expect, repeat_safe=True
        )

    def _meetings(self, user: str) -> str:
        return f"/users/{_seg(user)}/onlineMeetings"

    async def create_or_get(self, user: str, body: JsonObject) -> JsonObject:
        """Create the meeting for `body["externalId"]`, or return the one that exists."""
        response = await self._repeatable(
            "POST", f"{self._meetings(user)}/createOrGet", json=body, expect=(200, 201)
        )
        return json_object(response, PROVIDER_NAME)

    async def get_meeting(self, user: str, meeting_id: str) -> JsonObject:
        response = await self._repeatable(
            "GET", f"{self._meetings(user)}/{_seg(meeting_id)}", expect=(200,)
        )
        return json_object(response, PROVIDER_NAME)

    async def update_meeting(self, user: str, meeting_id: str, body: JsonObject) -> JsonObject:
        response = await self._repeatable(
            "PATCH", f"{self._meetings(user)}/{_seg(meeting_id)}", json=body, expect=(200,)
        )
        return json_object(response, PROVIDER_NAME)

    async def delete_meeting(self, user: str, meeting_id: str) -> None:
        """Delete; a meeting that is already gone counts as deleted."""
        await self._repeatable(
            "DELETE", f"{self._meetings(user)}/{_seg(meeting_id)}", expect=(200, 204, 404)
        )

    async def find_meeting_by_join_url(self, user: str, join_url: str) -> JsonObject | None:
        """The onlineMeeting behind a calendar event (Graph documents this $filter)."""
        quoted = join_url.replace("'", "''")  # OData string literal escaping
        response = await self._repeatable(
            "GET",
            self._meetings(user),
            params={"$filter": f"JoinWebUrl eq '{quoted}'"},
            expect=(200,),
        )
        values = json_object(response, PROVIDER_NAME).get("value")
        if isinstance(values, list) and values and isinstance(values[0], dict):
            return values[0]
        return None

    async def attendance_reports(self, user: str, meeting_id: str) -> list[JsonObject]:
        """Every attendance report of the meeting (one per session), following nextLink."""
        url: str | None = f"{self._meetings(user)}/{_seg(meeting_id)}/attendanceReports"
        reports: list[JsonObject] = []
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            page = json_object(await self._repeatable("GET", url, expect=(200,)), PROVIDER_NAME)
            values = page.get("value")
            if isinstance(values, list):
                reports.extend(v for v in values if isinstance(v, dict))
            link = page.get("@odata.nextLink")
            # Only ever follow a link back to Graph: our bearer token goes with it.
            url = link if isinstance(link, str) and link.startswith(f"{self._base}/") else None
        return reports

    async def create_event(self, user: str, body: JsonObject) -> JsonObject:
        """Create a calendar event; Graph dedupes a retry by `transactionId`."""
        response = await self._repeatable(
            "POST", f"/users/{_seg(user)}/events", json=body, expect=(200, 201)
        )
        return json_object(response, PROVIDER_NAME)

    async def update_event(self, user: str, event_id: str, body: JsonObject) -> JsonObject:
        response = await self._repeatable(
            "PATCH", f"/users/{_seg(user)}/events/{_seg(event_id)}", json=body, expect=(200,)
        )
        return json_object(response, PROVIDER_NAME)

    async def delete_event(self, user: str, event_id: str) -> None:
        """Delete without notifying anyone (there are no attendees; we deliver ourselves)."""
        await self._repeatable(
            "DELETE", f"/users/{_seg(user)}/events/{_seg(event_id)}", expect=(200, 204, 404)
        )

    async def aclose(self) -> None:
        await self._http.aclose()
