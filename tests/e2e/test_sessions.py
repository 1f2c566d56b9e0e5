"""Server-side sessions against the real OpenID provider: a user in many groups signs in,
and signing out (ours, then the provider's) leaves a copied cookie worth nothing."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin

import httpx
import pytest

from tests.e2e.flows import FORM_ACTION, HIDDEN, Walk, csrf_from, follow, sign_in
from tests.support.sessions import COOKIE_NAME

BROWSER_COOKIE_LIMIT = 4096  # bytes of name=value a browser keeps at most (RFC 6265 5.3)


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0) as client:
        yield client


def test_a_user_in_forty_groups_signs_in(browser: httpx.Client, app_url: str) -> None:
    walk = sign_in(browser, app_url, "gina")
    assert walk.response is not None and walk.response.status_code == 200
    assert str(walk.response.url) == f"{app_url}/meetings"
    cookie = browser.cookies[COOKIE_NAME]
    assert len(COOKIE_NAME) + 1 + len(cookie) < BROWSER_COOKIE_LIMIT // 4


def test_a_cookie_copied_before_sign_out_no_longer_signs_in(
    browser: httpx.Client, app_url: str
) -> None:
    sign_in(browser, app_url, "dana")
    copied = browser.cookies[COOKIE_NAME]
    home = browser.get(f"{app_url}/meetings")
    out = browser.post(f"{app_url}/auth/logout", data={"csrf_token": csrf_from(home.text)})
    walk = Walk()
    follow(browser, out, walk)
    confirm = walk.response
    assert confirm is not None
    action = FORM_ACTION.search(confirm.text)
    assert action is not None
    fields = dict(HIDDEN.findall(confirm.text)) | {"logout": "yes"}
    follow(browser, browser.post(urljoin(str(confirm.url), action.group(1)), data=fields), walk)
    assert walk.visited[-1] == f"{app_url}/auth/signed-out"
    with httpx.Client(timeout=15.0) as thief:
        thief.cookies.set(COOKIE_NAME, copied, domain="127.0.0.1")
        replay = thief.get(f"{app_url}/meetings")
        assert replay.status_code == 303 and replay.headers["location"].startswith("/auth/login")
        assert thief.get(f"{app_url}/api/v1/meetings").status_code == 401
