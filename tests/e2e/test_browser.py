"""A real browser (Debian's chromium through Playwright) against the real OpenID provider:
sign in, request a meeting through the form, see it listed, sign out.

Every request the browser makes is checked: anything not addressed to 127.0.0.1 is
aborted and fails the test (the provider's stock pages would fetch web fonts).
A screenshot of the meeting-request page is saved under tests/artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = Path(os.environ.get("PROVISIONER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright to run the browser test"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(
            timezone_id="Europe/Lisbon", viewport={"width": 390, "height": 844}
        )
        offsite: list[str] = []

        def guard(route: Any) -> None:
            url = route.request.url
            if urlsplit(url).hostname in ("127.0.0.1", None) or url.startswith("data:"):
                route.continue_()
            else:
                offsite.append(url)
                route.abort()

        context.route("**/*", guard)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
        assert not [u for u in offsite if "fonts.googleapis.com" not in u], offsite


def test_sign_in_request_list_sign_out(page: Any, app_url: str) -> None:
    page.goto(f"{app_url}/meetings/new")
    assert "/auth/login" in page.url
    page.click("#sign-in")
    page.fill("input[name=login]", "dana")
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.wait_for_url(f"{app_url}/meetings/new")
    assert page.get_by_label("Topic").is_visible()
    assert page.locator("#settings-passcode").is_disabled()
    assert "Locked by the organisation policy" in page.inner_text("body")
    assert page.locator("select[name='timezone']").input_value() == "Europe/Lisbon"

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "meeting-request-page.png"
    start = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Topic").fill("Browser-booked review")
    page.get_by_label("Start").fill(start)
    page.get_by_label("Duration (minutes)").fill("45")
    page.get_by_label("Invitees").fill("Ana Lima <ana@example.com>")
    page.get_by_label("Chat").select_option("off")
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the meeting-request page: {shot}")
    page.get_by_role("button", name="Request meeting").click()
    page.wait_for_url(f"{app_url}/meetings/*")
    assert page.locator("#join-passcode").input_value()
    page.get_by_role("button", name="Copy passcode").click()

    page.goto(f"{app_url}/meetings")
    assert page.get_by_role("link", name="Browser-booked review").is_visible()
    assert "WET" in page.inner_text("table") or "WEST" in page.inner_text("table")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{app_url}/auth/signed-out")
    page.goto(f"{app_url}/meetings")
    assert "/auth/login" in page.url
