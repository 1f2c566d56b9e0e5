"""The Webex Meetings REST calls provisioner makes, on the shared `ProviderHttp`.

Reads, updates and deletes are idempotent and go through the retrying client. Creating a
meeting and inviting someone are not: Webex may have acted before a 500 or a timeout
reached us. Those go out once per attempt, and after an ambiguous failure we look for
what we meant to create (the meeting by its `integrationTag`, the invitee by email)
before trying again, so a retry never makes a second meeting or invitee.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import SecretStr

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
    token_response_body,
)
from provisioner.providers.webex.config import WebexConfig
from provisioner.redaction import scrub_text

log = structlog.get_logger(__name__)

PROVIDER_NAME = "webex"
PAGE_SIZE = 100  # Webex's maximum for meetings, invitees and participants
MAX_PAGES = 20
# Static tokens carry no lifetime we can read; treat them as valid until a 401 says not.
STATIC_TOKEN_SECONDS = 14 * 24 * 3600.0
PATCH_MEDIA_TYPE = "application/json-patch+json"  # what the spec declares for PATCH bodies
JsonObject = dict[str, Any]

_URL = re.compile(r"https?://\S+")
_ID_PATH = re.compile(r"/meetings/(?!join\b|controls\b)[^/]+")
# Request fields Webex's prose errors name; the first one mentioned becomes `field`.
_FIELDS = re.compile(
    r"\b(password|title|start|end|timezone|hostEmail|invitees?|email|agenda|integrationTags|"
    r"unlockedMeetingJoinSecurity|enabledJoinBeforeHost|siteUrl|meetingId)\b",
    re.IGNORECASE,
)


def safe_message(text: object, *, limit: int = 200) -> str:
    """A provider message fit for an error: no URLs, no token-like strings, one line."""
    if not isinstance(text, str):
        return ""
    return scrub_text(_URL.sub("[url]", text)).replace("\n", " ").strip()[:limit]


def _where(response: httpx.Response) -> str:
    path = _ID_PATH.sub("/meetings/{meetingId}", response.request.url.path)
    return f"{PROVIDER_NAME} {response.request.method} {path} answered {response.status_code}"


def webex_error(response: httpx.Response) -> ProviderError | None:
    """Map a final Webex 4xx to a typed error; ProviderHttp handles 429 and 5xx.

    Webex answers `{"message": ..., "errors": [{"description": ...}], "trackingId": ...}`;
    it names fields in prose, so the first known request field mentioned becomes `field`.
    The tracking id is kept: Webex support asks for it.
    """
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    texts = [body.get("message")]
    errors = body.get("errors")
    if isinstance(errors, list):
        texts += [e.get("description") for e in errors if isinstance(e, dict)]
    message = "; ".join(m for m in (safe_message(t) for t in texts) if m)
    tracking = body.get("trackingId")
    detail = _where(response) + (f": {message}" if message else "")
    if isinstance(tracking, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,80}", tracking):
        detail += f" (trackingId {tracking})"
    status = response.status_code
    if status == 401:
        return ProviderAuthFailed(detail, provider=PROVIDER_NAME)
    if status == 403:
        return ProviderAuthFailed(
            detail + "; check the token's scopes (docs/providers/webex.md)", provider=PROVIDER_NAME
        )
    if status in (404, 410):
        return ProviderNotFound(detail, provider=PROVIDER_NAME)
    if status == 423:  # Locked: "temporarily unavailable", may carry Retry-After
        return ProviderRetriable(
            detail,
            provider=PROVIDER_NAME,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    named = _FIELDS.search(" ".join(t for t in texts if isinstance(t, str)))
    field = named.group(1) if named else None
    return ProviderRejected(detail, provider=PROVIDER_NAME, field=field)


def _json(response: httpx.Response) -> JsonObject:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"{_where(response)} with a body that is not a JSON object", provider=PROVIDER_NAME
        )
    return body


class WebexClient:
    """One Webex site's API: token handling, retrying reads, create-once writes.

    Args:
        config: the validated settings.
        transport: replaces the network (tests pass a simulator or a recording transport).
        sleep, rand, clock: injectable for deterministic tests.
    """

    def __init__(
        self,
        config: WebexConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,  # noqa: S311 (jitter, not secrecy)
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._refresh_token = config.refresh_token
        self.retry = RetryPolicy(max_attempts=config.max_attempts)
        self.circuit = Circuit()
        self.auth = CachedTokenAuth(self._fetch_token, client=lambda: self.http.client, clock=clock)
        common: dict[str, Any] = {
            "base_url": config.api_base,
            "auth": self.auth,
            "transport": transport,
            "timeout": httpx.Timeout(
                connect=config.connect_timeout_seconds,
                read=config.read_timeout_seconds,
                write=10.0,
                pool=5.0,
            ),
            "circuit": self.circuit,
            "map_error": webex_error,
            "rand": rand,
            "sleep": sleep,
        }
        self.http = ProviderHttp(PROVIDER_NAME, retry=self.retry, **common)

    async def aclose(self) -> None:
        await self.http.aclose()

    def host_params(self, host_email: str) -> dict[str, str]:
        return {"hostEmail": host_email} if self._config.act_for_host else {}

    async def _fetch_token(self, client: httpx.AsyncClient) -> AccessToken:
        """The static token, or a fresh one from the `refresh_token` grant."""
        if not self._config.refreshes or self._refresh_token is None:
            assert self._config.access_token is not None  # noqa: S101 (config validator)
            return AccessToken(
                self._config.access_token.get_secret_value(), self._clock() + STATIC_TOKEN_SECONDS
            )
        response = await client.post(
            str(self._config.token_url),
            data={
                "grant_type": "refresh_token",
                "client_id": self._config.client_id or "",
                "client_secret": (
                    self._config.client_secret.get_secret_value()
                    if self._config.client_secret
                    else ""
                ),
                "refresh_token": self._refresh_token.get_secret_value(),
            },
            auth=httpx.Auth(),  # a no-op: the bearer auth must not wrap its own refresh
        )
        status = response.status_code
        body = token_response_body(response, provider=PROVIDER_NAME)
        token = body.get("access_token") if isinstance(body, dict) else None
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        if status != 200 or not isinstance(token, str) or not isinstance(expires_in, int | float):
            raise ProviderAuthFailed(
                f"{PROVIDER_NAME}: token endpoint refused the refresh ({status}); authorise "
                "the app again and store the new refresh_token",
                provider=PROVIDER_NAME,
            )
        renewed = body.get("refresh_token") if isinstance(body, dict) else None
        if isinstance(renewed, str) and renewed:
            self._refresh_token = SecretStr(renewed)  # Webex may rotate it
        return AccessToken(value=token, expires_at=self._clock() + float(expires_in))

    async def _pages(self, path: str, params: dict[str, Any]) -> list[JsonObject]:
        """All `items` of a listing, following `Link: rel="next"` on the API's own origin
        only (the bearer token must never follow a link elsewhere)."""
        origin = urlsplit(self._config.api_base)
        found: list[JsonObject] = []
        url: str = path
        query: dict[str, Any] | None = params
        for _ in range(MAX_PAGES):
            response = await self.http.request("GET", url, params=query, expect=(200,))
            found.extend(i for i in _json(response).get("items") or [] if isinstance(i, dict))
            following = response.links.get("next", {}).get("url")
            if not following:
                break
            target = urlsplit(following)
            if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                log.warning("provider.foreign_next_link", provider=PROVIDER_NAME)
                break
            url, query = following, None
        return found

    # -- meetings ---------------------------------------------------------------------

    async def create_meeting(
        self, body: JsonObject, *, tag: str, window: tuple[str, str]
    ) -> JsonObject:
        """POST /meetings, at most once per integration tag."""
        host = str(body.get("hostEmail", ""))

        async def write() -> JsonObject:
            return _json(
                await self.http.request(
                    "POST", "/meetings", json=body, expect=(200,), retry=ONE_ATTEMPT
                )
            )

        return await self.http.write_once(
            "create_meeting", write, lambda: self.find_meeting(tag, window, host_email=host)
        )

    async def find_meeting(
        self, tag: str, window: tuple[str, str], *, host_email: str
    ) -> JsonObject | None:
        """The meeting series carrying our integration tag, read in full."""
        params: dict[str, Any] = {
            "integrationTag": tag,
            "meetingType": "meetingSeries",
            "from": window[0],
            "to": window[1],
            "max": PAGE_SIZE,
        }
        if host_email:
            params.update(self.host_params(host_email))
        for item in await self._pages("/meetings", params):
            # The tag must be on the item itself: a listing that ignored the filter must
            # never make us adopt someone else's meeting (and deliver its link).
            if tag in (item.get("integrationTags") or []):
                return await self.get_meeting(str(item["id"]), host_email=host_email)
        return None

    async def get_meeting(self, meeting_id: str, *, host_email: str) -> JsonObject:
        return _json(
            await self.http.request(
                "GET",
                f"/meetings/{quote(meeting_id)}",
                params=self.host_params(host_email),
                expect=(200,),
            )
        )

    async def update_meeting(self, meeting_id: str, body: JsonObject) -> JsonObject:
        return _json(
            await self.http.request(
                "PATCH",
                f"/meetings/{quote(meeting_id)}",
                json=body,
                headers={"Content-Type": PATCH_MEDIA_TYPE},
                expect=(200,),
            )
        )

    async def delete_meeting(self, meeting_id: str, *, host_email: str) -> None:
        """Delete without Webex's own cancellation emails; a missing meeting is fine, so a
        bare 500 is retried too (deleting twice ends the same way)."""
        try:
            await self.http.request(
                "DELETE",
                f"/meetings/{quote(meeting_id)}",
                params={"sendEmail": "false", **self.host_params(host_email)},
                expect=(204,),
                repeat_safe=True,
            )
        except ProviderNotFound:
            return

    async def end_meeting(self, meeting_id: str) -> None:
        await self.http.request("POST", f"/meetings/{quote(meeting_id)}/end", expect=(204,))

    # -- invitees and participants ----------------------------------------------------

    async def invitees(self, meeting_id: str, *, host_email: str) -> list[JsonObject]:
        return await self._pages(
            "/meetingInvitees",
            {"meetingId": meeting_id, "max": PAGE_SIZE, **self.host_params(host_email)},
        )

    async def add_invitee(self, body: JsonObject) -> JsonObject:
        """POST /meetingInvitees, at most once per email."""
        email = str(body["email"]).lower()
        host = str(body.get("hostEmail", ""))

        async def write() -> JsonObject:
            return _json(
                await self.http.request(
                    "POST", "/meetingInvitees", json=body, expect=(200,), retry=ONE_ATTEMPT
                )
            )

        async def find() -> JsonObject | None:
            for invitee in await self.invitees(str(body["meetingId"]), host_email=host):
                if str(invitee.get("email", "")).lower() == email:
                    return invitee
            return None

        return await self.http.write_once("add_invitee", write, find)

    async def participants(self, meeting_id: str, *, host_email: str) -> list[JsonObject]:
        return await self._pages(
            "/meetingParticipants",
            {"meetingId": meeting_id, "max": PAGE_SIZE, **self.host_params(host_email)},
        )

    # -- in-meeting controls ----------------------------------------------------------

    async def update_participant(self, participant_id: str, body: JsonObject) -> JsonObject:
        """PUT /meetingParticipants/{participantId} (mute, admit, expel). Idempotent:
        expelling someone already gone answers 404, which the caller maps."""
        return _json(
            await self.http.request(
                "PUT",
                f"/meetingParticipants/{quote(participant_id, safe='')}",
                json=body,
                expect=(200,),
                repeat_safe=True,
            )
        )

    async def update_controls(self, meeting_id: str, body: JsonObject) -> JsonObject:
        """PUT /meetings/controls?meetingId=... (lock, recording) of a live meeting."""
        return _json(
            await self.http.request(
                "PUT",
                "/meetings/controls",
                params={"meetingId": meeting_id},
                json=body,
                expect=(200,),
                repeat_safe=True,
            )
        )

    async def list_meetings(self, params: dict[str, Any]) -> list[JsonObject]:
        """GET /meetings with `params` (every page on the API's own origin)."""
        return await self._pages("/meetings", {"max": PAGE_SIZE, **params})
