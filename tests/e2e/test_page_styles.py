"""Chromium with the app's own CSP (`style-src 'self'`): the page's styling must come from
app.css, since the browser drops any style="" attribute (and says so on the console).

An incident's statement is the case in point: its line breaks show only with
`white-space: pre-wrap`, which an inline attribute used to set and the CSP blocked.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from provisioner.app import build_state, close_state
from provisioner.settings import Settings
from tests.factories import meeting_body
from tests.support.app_server import serve_app
from tests.support.meeting_fixtures import BROWSER_OIDC, SettingsFactory
from tests.support.prism import free_port
from tests.support.sessions import COOKIE_NAME, browser_session, store_browser_sessions

CHROMIUM = Path(os.environ.get("PROVISIONER_TEST_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
STATEMENT = "10:05 Mallory joined\n10:06 shared images\n10:07 removed"


@pytest.fixture
def settings(settings_with: SettingsFactory) -> Settings:
    return settings_with(oidc=BROWSER_OIDC)


@pytest.fixture
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def store_sessions(settings: Settings) -> None:
    """Write the sessions `browser_session` made into the served app's database."""

    async def store() -> None:
        state = build_state(settings)
        try:
            await store_browser_sessions(state)
        finally:
            await close_state(state)

    # In a thread of its own: the test itself may be running inside pytest's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, store()).result()


def test_the_incident_statement_keeps_its_line_breaks_under_the_csp(
    settings: Settings, host_headers: dict[str, str], chromium: Any
) -> None:
    cookie, csrf = browser_session("ana", "ana@example.com", "Ana Lima", "employees")
    store_sessions(settings)
    with serve_app(settings, port=free_port()) as url, httpx.Client(base_url=url) as http:
        meeting = http.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        assert meeting.status_code == 201, meeting.text
        form = {"csrf_token": csrf, "meeting_id": meeting.json()["id"]}
        filed = http.post(
            "/incidents/new",
            headers=cookie,
            data=form | {"summary": "Disruption", "statement": STATEMENT},
        )
        assert filed.status_code == 303, filed.text
        context = chromium.new_context()
        context.route(
            "**/*",
            lambda route: (
                route.continue_()
                if urlsplit(route.request.url).hostname == "127.0.0.1"
                else route.abort()
            ),
        )
        context.add_cookies(
            [{"name": COOKIE_NAME, "value": cookie["Cookie"].split("=", 1)[1], "url": url}]
        )
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(url + filed.headers["location"])
        white_space = page.eval_on_selector("#statement", "e => getComputedStyle(e).whiteSpace")
        context.close()
    assert white_space == "pre-wrap"
    assert not [line for line in console if "Content Security Policy" in line]
