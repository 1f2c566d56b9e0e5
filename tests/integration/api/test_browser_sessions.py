"""Browser sessions kept on the server, and sign-in/sign-out when things go wrong.

The identity provider is `tests.support.fake_idp` (in process), so a test can make it
unreachable or have it sign an id_token for someone else; the real provider's code flow
is tested in tests/e2e.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, event, func, select, update

from provisioner.app import create_app
from provisioner.auth.models import BrowserSession
from provisioner.db import utcnow
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.support.fake_idp import ISSUER, FakeIdentityProvider, oidc_settings, sign_in_with
from tests.support.meeting_fixtures import SettingsFactory
from tests.support.sessions import COOKIE_NAME, SESSION_SECRET

DANA: dict[str, Any] = {
    "sub": "dana",
    "email": "dana@example.com",
    "name": "Dana",
    "groups": ["employees"],
}
# An employee whose directory puts them in forty groups (GUIDs, as Entra ID sends them).
GINA: dict[str, Any] = {
    "sub": "gina",
    "email": "gina@example.com",
    "name": "Gina Groups",
    "groups": [str(uuid.UUID(int=i)) for i in range(40)] + ["employees"],
}
BROWSER_COOKIE_LIMIT = 4096  # bytes of name=value a browser keeps at most (RFC 6265 5.3)


@pytest.fixture
def settings(settings_with: SettingsFactory) -> Settings:
    return settings_with(oidc=oidc_settings(SESSION_SECRET))


@pytest.fixture
def idp() -> FakeIdentityProvider:
    return FakeIdentityProvider()


@pytest.fixture
async def app(settings: Settings, state: AppState, idp: FakeIdentityProvider) -> FastAPI:
    # These tests count the table's rows: start from none (the `state` fixture stored the
    # sessions that other test modules made with `browser_session`).
    async with state.db.session() as session:
        await session.execute(delete(BrowserSession))
    app = create_app(settings, state=state, run_worker=False)
    idp.install(app, settings.oidc)
    return app


def browser_for(app: FastAPI) -> httpx.AsyncClient:
    """A browser: keeps its cookies, follows no redirects."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://provisioner.test")


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_for(app) as http:
        yield http


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def signed_in(response: httpx.Response) -> bool:
    return response.status_code == 200


async def rows(state: AppState) -> list[BrowserSession]:
    async with state.db.session() as session:
        return list(await session.scalars(select(BrowserSession)))


async def sign_out(browser: httpx.AsyncClient) -> httpx.Response:
    home = await browser.get("/meetings")
    return await browser.post("/auth/logout", data={"csrf_token": csrf_of(home.text)})


@pytest.fixture
def statements(state: AppState) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs while the test does."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(state.db.engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(state.db.engine.sync_engine, "before_cursor_execute", record)


class TestServerSideSession:
    async def test_a_cookie_copied_before_sign_out_is_worthless_after(
        self, app: FastAPI, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        assert (await sign_in_with(browser, idp, **DANA)).status_code == 303
        copied = browser.cookies[COOKIE_NAME]
        out = await sign_out(browser)
        assert out.status_code == 303
        assert out.headers["location"].startswith(f"{ISSUER}/logout?")
        assert await rows(state) == []
        async with browser_for(app) as thief:
            thief.cookies.set(COOKIE_NAME, copied)
            page = await thief.get("/meetings")
            assert page.status_code == 303 and page.headers["location"].startswith("/auth/login")
            assert (await thief.get("/api/v1/meetings")).status_code == 401

    async def test_a_user_in_forty_groups_signs_in_with_a_small_cookie(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        callback = await sign_in_with(browser, idp, **GINA)
        assert callback.status_code == 303
        cookie = next(
            value.split(";")[0]
            for value in callback.headers.get_list("set-cookie")
            if value.startswith(f"{COOKIE_NAME}=")
        )
        assert len(cookie) < BROWSER_COOKIE_LIMIT // 4
        page = await browser.get("/meetings")
        assert signed_in(page) and "Gina Groups" in page.text  # `employees` still counts
        [row] = await rows(state)
        assert row.groups == GINA["groups"]

    async def test_the_table_holds_no_usable_session_id_or_id_token(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        [row] = await rows(state)
        cookie = browser.cookies[COOKIE_NAME]
        assert row.id_hash not in cookie
        [id_token] = idp.issued_id_tokens
        assert row.id_token is not None and id_token not in row.id_token
        assert row.id_token.startswith("v1.")  # sealed by the FieldCipher
        out = await sign_out(browser)
        assert f"id_token_hint={id_token}" in out.headers["location"]  # unsealed for logout

    async def test_the_id_hash_is_the_sha256_of_the_cookies_session_id(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        # Starlette's cookie is base64 JSON before the signature; read the id from it.
        data = browser.cookies[COOKIE_NAME].split(".")[0]
        content = json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))
        assert set(content) == {"sid", "csrf"}  # no identity in the cookie
        [row] = await rows(state)
        assert row.id_hash == hashlib.sha256(content["sid"].encode()).hexdigest()

    async def test_an_expired_row_is_no_session_and_sign_in_purges_it(
        self, app: FastAPI, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        async with state.db.session() as session:
            await session.execute(
                update(BrowserSession).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        assert (await browser.get("/meetings")).status_code == 303
        async with browser_for(app) as other:
            await sign_in_with(other, idp, **GINA)
        assert [row.subject for row in await rows(state)] == ["gina"]

    async def test_signing_in_again_replaces_the_browsers_session(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        first = browser.cookies[COOKIE_NAME]
        await sign_in_with(browser, idp, **GINA)
        assert browser.cookies[COOKIE_NAME] != first
        assert [row.subject for row in await rows(state)] == ["gina"]

    async def test_one_lookup_per_page_and_none_for_a_bearer_token(
        self,
        browser: httpx.AsyncClient,
        idp: FakeIdentityProvider,
        host_headers: dict[str, str],
        statements: list[str],
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        statements.clear()
        assert signed_in(await browser.get("/meetings"))
        assert sum("browser_sessions" in s for s in statements) == 1
        statements.clear()
        # A bearer token wins over the cookie, and never costs a session lookup.
        api = await browser.get("/api/v1/meetings", headers=host_headers)
        assert api.status_code == 200
        assert not any("browser_sessions" in s for s in statements)

    async def test_the_api_still_wants_the_csrf_token_with_a_session(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        assert (await browser.delete("/api/v1/meetings/x")).status_code == 403
        async with state.db.session() as session:
            assert await session.scalar(select(func.count()).select_from(BrowserSession)) == 1


class TestIdentityProviderUnavailable:
    async def test_sign_out_ends_our_session_when_the_provider_is_down(
        self,
        app: FastAPI,
        browser: httpx.AsyncClient,
        idp: FakeIdentityProvider,
        settings: Settings,
        state: AppState,
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        copied = browser.cookies[COOKIE_NAME]
        down = FakeIdentityProvider(issuer=idp.issuer, down=True)
        down.install(app, settings.oidc)  # a fresh client: no discovery document cached
        out = await sign_out(browser)
        assert out.status_code == 303 and out.headers["location"] == "/auth/signed-out"
        assert await rows(state) == []
        async with browser_for(app) as thief:
            thief.cookies.set(COOKIE_NAME, copied)
            assert (await thief.get("/meetings")).status_code == 303

    async def test_sign_in_start_is_a_503_page_when_the_provider_is_down(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider
    ) -> None:
        idp.down = True
        started = await browser.get("/auth/start", params={"next": "/meetings"})
        assert started.status_code == 503
        assert started.headers["content-type"].startswith("text/html")
        assert "provider_unavailable" in started.text

    async def test_an_identity_provider_answering_garbage_is_a_503_page_not_a_500(
        self,
        app: FastAPI,
        browser: httpx.AsyncClient,
        idp: FakeIdentityProvider,
        settings: Settings,
        state: AppState,
    ) -> None:
        await sign_in_with(browser, idp, **DANA)
        garbled = FakeIdentityProvider(issuer=idp.issuer, garbled=True)
        garbled.install(app, settings.oidc)  # a fresh client: no discovery document cached

        started = await browser.get("/auth/start", params={"next": "/meetings"})
        assert started.status_code == 503 and "provider_unavailable" in started.text
        out = await sign_out(browser)  # and our session still ends
        assert out.status_code == 303 and out.headers["location"] == "/auth/signed-out"
        assert await rows(state) == []


class TestCallbackRefusals:
    async def test_an_id_token_for_another_application_is_refused(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        callback = await sign_in_with(browser, idp, **DANA, aud="another-app")
        assert callback.status_code == 403 and "invalid_id_token" in callback.text
        assert await rows(state) == []
        assert (await browser.get("/meetings")).status_code == 303

    async def test_an_authorized_party_does_not_stand_in_for_the_audience(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        callback = await sign_in_with(
            browser, idp, **DANA, aud=["another-app"], azp="provisioner-web"
        )
        assert callback.status_code == 403
        assert await rows(state) == []

    async def test_an_id_token_from_another_issuer_is_refused(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider, state: AppState
    ) -> None:
        callback = await sign_in_with(browser, idp, **DANA, iss="https://other.invalid")
        assert callback.status_code == 403
        assert await rows(state) == []

    async def test_our_audience_among_others_is_accepted(
        self, browser: httpx.AsyncClient, idp: FakeIdentityProvider
    ) -> None:
        callback = await sign_in_with(
            browser, idp, **DANA, aud=["provisioner-web", "another-app"], azp="provisioner-web"
        )
        assert callback.status_code == 303

    async def test_the_error_text_of_a_link_is_never_shown(
        self, browser: httpx.AsyncClient
    ) -> None:
        bait = "Your account is locked. Call IT at +1-555-0100 and read them your password"
        page = await browser.get(
            "/auth/callback", params={"error": bait, "error_description": bait}
        )
        assert page.status_code == 403
        assert "555-0100" not in page.text and "password" not in page.text
        assert "did not sign you in" in page.text

    @pytest.mark.parametrize(
        ("code", "wording"),
        [
            ("access_denied", "cancelled or refused"),
            ("login_required", "sign in there first"),
            ("temporarily_unavailable", "busy"),
        ],
    )
    async def test_a_standard_error_code_gets_our_wording(
        self, browser: httpx.AsyncClient, code: str, wording: str
    ) -> None:
        page = await browser.get("/auth/callback", params={"error": code})
        assert page.status_code == 403
        assert wording in page.text and f"<code>{code}</code>" in page.text
