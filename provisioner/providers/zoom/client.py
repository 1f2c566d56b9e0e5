"""The Zoom REST calls provisioner makes, on the shared `ProviderHttp`.

Reads, updates and deletes are idempotent and go through the retrying client. Creating a
meeting and adding a registrant are not: Zoom may have acted before a 500 or a timeout
reached us. Those go out once per attempt, and after an ambiguous failure we look for
what we meant to create (the meeting by the marker in its `agenda`, the registrant by
email) before trying again, so a retry never makes a second meeting or registrant.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
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
    ONE_ATTEMPT,
    AccessToken,
    CachedTokenAuth,
    Circuit,
    ProviderHttp,
    RetryPolicy,
    token_response_body,
)
from provisioner.providers.zoom.config import ZoomConfig
from provisioner.redaction import scrub_text

log = structlog.get_logger(__name__)

PROVIDER_NAME = "zoom"
PAGE_SIZE = 300  # Zoom's maximum
JsonObject = dict[str, Any]

_URL = re.compile(r"https?://\S+")
_FIELD = re.compile(r"^[A-Za-z0-9_.\[\]-]{1,64}$")
_USER_PATH = re.compile(r"/users/[^/]+")
_NUMBER_PATH = re.compile(r"/\d+")


def safe_message(text: object, *, limit: int = 200) -> str:
    """A provider message fit for an error: no URLs, no token-like strings, one line."""
    if not isinstance(text, str):
        return ""
    return scrub_text(_URL.sub("[url]", text)).replace("\n", " ").strip()[:limit]


def _where(response: httpx.Response) -> str:
    """`zoom POST /users/{userId}/meetings answered 400`, without emails or meeting ids."""
    path = _NUMBER_PATH.sub("/{id}", _USER_PATH.sub("/users/{userId}", response.request.url.path))
    return f"{PROVIDER_NAME} {response.request.method} {path} answered {response.status_code}"


def zoom_error(response: httpx.Response) -> ProviderError | None:
    """Map a final Zoom 4xx (or 300) to a typed error; ProviderHttp handles 429 and 5xx.

    Zoom answers `{"code": 300, "message": "Validation Failed.", "errors": [{"field":
    "settings.x", "message": "..."}]}`; the first named field becomes `field`.
    """
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = body.get("code")
    code_text = f" (Zoom error {code})" if isinstance(code, int) else ""
    message = safe_message(body.get("message"))
    field: str | None = None
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("field"), str):
                if _FIELD.match(item["field"]):
                    field = item["field"]
                    message = safe_message(item.get("message")) or message
                    break
    detail = _where(response) + code_text + (f": {message}" if message else "")
    status = response.status_code
    if status == 401 or code == 124:  # 124: invalid or expired access token
        return ProviderAuthFailed(detail, provider=PROVIDER_NAME)
    if status == 403 or code in (4700, 4711):  # 4700/4711: the token lacks a permission/scope
        return ProviderAuthFailed(
            detail + "; check the app's scopes (docs/providers/zoom.md)", provider=PROVIDER_NAME
        )
    if status == 404 or code in (1001, 3001):  # user / meeting does not exist
        return ProviderNotFound(detail, provider=PROVIDER_NAME)
    if field is not None:
        detail += f" [field {field}]"
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


def user_path(email: str) -> str:
    return "/users/" + quote(email.strip(), safe="@+")


class ZoomClient:
    """One Zoom account's API: token cache, retrying reads, create-once writes.

    Args:
        config: the validated settings.
        transport: replaces the network (tests pass a simulator or a recording transport).
        sleep, rand, clock: injectable for deterministic tests.
    """

    def __init__(
        self,
        config: ZoomConfig,
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
            "map_error": zoom_error,
            "rand": rand,
            "sleep": sleep,
        }
        self.http = ProviderHttp(PROVIDER_NAME, retry=self.retry, **common)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _fetch_token(self, client: httpx.AsyncClient) -> AccessToken:
        """Server-to-Server OAuth: `account_credentials` grant with HTTP Basic client auth.

        Transport errors propagate as httpx errors, so ProviderHttp retries them.
        """
        secret = self._config.client_secret.get_secret_value()
        response = await client.post(
            self._config.token_url,
            params={"grant_type": "account_credentials", "account_id": self._config.account_id},
            auth=httpx.BasicAuth(self._config.client_id, secret),
        )
        status = response.status_code
        body = token_response_body(response, provider=PROVIDER_NAME)
        if status != 200:
            # The body's `reason` can quote the client id; name the status only.
            raise ProviderAuthFailed(
                f"{PROVIDER_NAME}: token endpoint refused the app's credentials ({status}); "
                "check account_id, client_id and client_secret",
                provider=PROVIDER_NAME,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise ProviderAuthFailed(
                f"{PROVIDER_NAME}: token response lacks access_token or expires_in",
                provider=PROVIDER_NAME,
            )
        return AccessToken(value=token, expires_at=self._clock() + float(expires_in))

    # -- meetings ---------------------------------------------------------------------

    async def create_meeting(self, host_email: str, body: JsonObject, *, marker: str) -> JsonObject:
        """POST /users/{userId}/meetings, at most once per marker."""

        async def write() -> JsonObject:
            response = await self.http.request(
                "POST",
                user_path(host_email) + "/meetings",
                json=body,
                expect=(201,),
                retry=ONE_ATTEMPT,
            )
            return _json(response)

        return await self.http.write_once(
            "create_meeting", write, lambda: self.find_meeting(host_email, marker)
        )

    async def find_meeting(self, host_email: str, marker: str) -> JsonObject | None:
        """The host's scheduled meeting whose agenda carries `marker`, read in full."""
        listed = await self._paged(
            user_path(host_email) + "/meetings",
            {"type": "scheduled"},
            "meetings",
            max_pages=self._config.marker_lookup_pages,
        )
        for item in listed:
            if item.get("agenda") == marker:
                return await self.get_meeting(int(item["id"]))
        return None

    async def _paged(
        self, path: str, params: dict[str, Any], key: str, *, max_pages: int = 20
    ) -> list[JsonObject]:
        """Every object under `key` across `next_page_token` pages (bounded, and stopping
        if the API hands back a token it already gave)."""
        found: list[JsonObject] = []
        seen: set[str] = set()
        token = ""
        for _ in range(max_pages):
            query = {**params, "page_size": PAGE_SIZE}
            if token:
                query["next_page_token"] = token
            page = _json(await self.http.request("GET", path, params=query, expect=(200,)))
            found.extend(item for item in page.get(key) or [] if isinstance(item, dict))
            token = str(page.get("next_page_token") or "")
            if not token or token in seen:
                break
            seen.add(token)
        return found

    async def get_meeting(self, meeting_id: int) -> JsonObject:
        return _json(await self.http.request("GET", f"/meetings/{meeting_id}", expect=(200,)))

    async def update_meeting(self, meeting_id: int, body: JsonObject) -> None:
        await self.http.request("PATCH", f"/meetings/{meeting_id}", json=body, expect=(204,))

    async def delete_meeting(self, meeting_id: int) -> None:
        """Delete without Zoom's own cancellation emails; a missing meeting is fine, so a
        bare 500 is retried too (deleting twice ends the same way)."""
        try:
            await self.http.request(
                "DELETE",
                f"/meetings/{meeting_id}",
                params={"schedule_for_reminder": "false", "cancel_meeting_reminder": "false"},
                expect=(204,),
                repeat_safe=True,
            )
        except ProviderNotFound:
            return

    async def end_meeting(self, meeting_id: int) -> None:
        await self.http.request(
            "PUT", f"/meetings/{meeting_id}/status", json={"action": "end"}, expect=(204,)
        )

    # -- registrants ------------------------------------------------------------------

    async def registrants(self, meeting_id: int) -> list[JsonObject]:
        """Every approved registrant (each with their own `join_url`)."""
        return await self._paged(
            f"/meetings/{meeting_id}/registrants", {"status": "approved"}, "registrants"
        )

    async def cancel_registrants(self, meeting_id: int, emails: list[str]) -> None:
        """PUT /meetings/{id}/registrants/status `cancel`: their join_urls stop working.

        Idempotent (cancelling twice leaves them cancelled), so it is retried normally;
        Zoom takes at most 30 registrants per call.
        """
        for start in range(0, len(emails), 30):
            chunk = emails[start : start + 30]
            await self.http.request(
                "PUT",
                f"/meetings/{meeting_id}/registrants/status",
                json={"action": "cancel", "registrants": [{"email": e} for e in chunk]},
                expect=(204,),
                repeat_safe=True,
            )

    async def add_registrant(self, meeting_id: int, body: JsonObject) -> JsonObject:
        """POST /meetings/{id}/registrants, at most once per email."""
        email = str(body["email"]).lower()

        async def write() -> JsonObject:
            response = await self.http.request(
                "POST",
                f"/meetings/{meeting_id}/registrants",
                json=body,
                expect=(201,),
                retry=ONE_ATTEMPT,
            )
            return _json(response)

        async def find() -> JsonObject | None:
            for registrant in await self.registrants(meeting_id):
                if str(registrant.get("email", "")).lower() == email:
                    return registrant
            return None

        return await self.http.write_once("add_registrant", write, find)

    # -- settings and participants ----------------------------------------------------

    async def user_settings(self, host_email: str) -> JsonObject:
        """The host's settings; screen sharing and chat live here, not on the meeting."""
        return _json(
            await self.http.request("GET", user_path(host_email) + "/settings", expect=(200,))
        )

    async def live_participants(self, meeting_id: int) -> list[JsonObject]:
        return await self._paged(
            f"/metrics/meetings/{meeting_id}/participants",
            {"type": "live", "include_fields": "registrant_id"},
            "participants",
        )

    # -- the compliance scan ----------------------------------------------------------

    async def active_users(self, *, max_pages: int = 20) -> list[JsonObject]:
        """GET /users?status=active: every user whose meetings the scan reads."""
        return await self._paged("/users", {"status": "active"}, "users", max_pages=max_pages)

    async def upcoming_meetings(self, host_email: str) -> list[JsonObject]:
        """GET /users/{userId}/meetings?type=upcoming (summaries; no settings)."""
        return await self._paged(
            user_path(host_email) + "/meetings", {"type": "upcoming"}, "meetings"
        )
