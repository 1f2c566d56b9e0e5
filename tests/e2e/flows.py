"""The browser's side of the code flow, done with httpx: follow redirects by hand, fill in
the provider's login form, and stop where the app answers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"', re.IGNORECASE)
HIDDEN = re.compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', re.I)


@dataclass
class Walk:
    """Every URL visited and the last response."""

    visited: list[str] = field(default_factory=list)
    response: httpx.Response | None = None

    def query_of(self, prefix: str) -> dict[str, list[str]]:
        url = next(u for u in self.visited if u.startswith(prefix))
        return parse_qs(urlsplit(url).query)


def follow(client: httpx.Client, response: httpx.Response, walk: Walk, limit: int = 15) -> None:
    """Follow redirects by hand, recording each hop."""
    for _ in range(limit):
        walk.response = response
        if response.status_code not in (301, 302, 303, 307, 308):
            return
        target = urljoin(str(response.url), response.headers["location"])
        walk.visited.append(target)
        response = client.get(target)
    raise AssertionError("too many redirects")


def sign_in(
    client: httpx.Client, app_url: str, login: str, *, next_path: str = "/meetings"
) -> Walk:
    """Start at the app, sign in at the provider's login form, end back at the app."""
    walk = Walk()
    follow(client, client.get(f"{app_url}/auth/start", params={"next": next_path}), walk)
    page = walk.response
    assert page is not None and page.status_code == 200, page
    action = FORM_ACTION.search(page.text)
    assert action, page.text[:500]
    login_url = urljoin(str(page.url), action.group(1))
    fields = dict(HIDDEN.findall(page.text)) | {"login": login, "password": "anything"}
    posted = client.post(login_url, data=fields)
    follow(client, posted, walk)
    return walk


def csrf_from(html: str) -> str:
    for name, value in HIDDEN.findall(html):
        if name == "csrf_token":
            return str(value)
    raise AssertionError("no csrf_token field on the page")
