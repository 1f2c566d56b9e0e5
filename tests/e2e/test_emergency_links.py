"""The host's one-click emergency links, end to end: a real OpenID provider, the app on a
port, the Zoom simulator on another, and the host's email as the worker wrote it.

The browser test follows the *end now* link from the email, signs in, confirms, and the
simulator shows the meeting ended; the same link then refuses a second use. The httpx
tests cover the other refusals (another signed-in user, an expired link, a GET, a POST
without the CSRF token), each showing that nothing changed: the simulator ended nothing
and the link is still unused.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from provisioner.app import build_state, close_state
from provisioner.settings import Settings
from tests.contract.providers.zoom.test_simulator import AUTH_OPTION
from tests.e2e.conftest import e2e_settings
from tests.e2e.flows import csrf_from, sign_in
from tests.e2e.test_browser import page  # noqa: F401 (the Playwright page fixture)
from tests.simulators.zoom import ZoomSimulator
from tests.support.app_server import serve_app
from tests.support.live import serve_asgi
from tests.support.oidc_server import OidcServer

ACTIONS = {
    "End now for everyone": "end",
    "Rotate the link": "rotate",
    "Report an incident": "report",
}
LINK_LINE = re.compile(rf"^- ({'|'.join(ACTIONS)}): (\S+)$", re.M)


@pytest.fixture
def zoom_sim() -> Iterator[tuple[ZoomSimulator, str]]:
    sim = ZoomSimulator(hang_seconds=5.0)
    with serve_asgi(sim) as url:
        yield sim, url


@pytest.fixture
def zoom_settings(
    tmp_path: Path,
    sqlite_template: Path,
    oidc: OidcServer,
    app_port: int,
    zoom_sim: tuple[ZoomSimulator, str],
) -> Settings:
    sim, url = zoom_sim
    return e2e_settings(
        tmp_path,
        sqlite_template,
        oidc,
        app_port,
        default_provider="zoom",
        providers={
            "zoom": {
                "account_id": sim.account_id,
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
                "api_url": url,
                "oauth_url": url,
                "authentication_option": AUTH_OPTION,
            }
        },
    )


@pytest.fixture
def zoom_app(zoom_settings: Settings, app_port: int) -> Iterator[str]:
    with serve_app(zoom_settings, port=app_port) as url:
        yield url


def run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on its own loop in its own thread (Playwright owns this thread's)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def deliver(settings: Settings) -> None:
    """Send every queued delivery, as a worker process would."""

    async def drain() -> None:
        state = build_state(settings)
        try:
            await state.worker.drain()
        finally:
            await close_state(state)

    run(drain)


def book_meeting(app_url: str) -> str:
    """Dana requests a Zoom meeting through the web form; returns its id."""
    with httpx.Client(timeout=15.0) as client:
        walk = sign_in(client, app_url, "dana", next_path="/meetings/new")
        assert walk.response is not None and walk.response.status_code == 200
        start = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        posted = client.post(
            f"{app_url}/meetings/new",
            data={
                "csrf_token": csrf_from(walk.response.text),
                "topic": "Board prep",
                "start": start,
                "duration_minutes": "30",
                "timezone": "Europe/Lisbon",
                "invitees": "Ana Lima <ana@example.com>",
                "provider": "zoom",
            },
        )
        assert posted.status_code == 303, posted.text[:2000]
        return posted.headers["location"].rsplit("/", 1)[-1]


def messages(settings: Settings) -> list[EmailMessage]:
    found = []
    for path in sorted(settings.email.file_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage, subtype: str = "plain") -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def host_links(settings: Settings) -> dict[str, str]:
    """The emergency links in the host's email, by action."""
    (host,) = [m for m in messages(settings) if str(m["To"]).endswith("<dana@example.com>")]
    return {ACTIONS[label]: url for label, url in LINK_LINE.findall(text_of(host))}


def link_row(settings: Settings, url: str) -> tuple[str | None, str]:
    """(used_at, meeting state) for the link in `url`, read straight from the database."""
    hex_id = urlsplit(url).path.rsplit("/", 1)[-1].split(".")[1]
    with sqlite3.connect(database_file(settings)) as db:
        row = db.execute(
            "SELECT l.used_at, m.state FROM action_links l JOIN meetings m "
            "ON m.id = l.meeting_id WHERE l.id = ?",
            (str(uuid.UUID(hex_id)),),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def database_file(settings: Settings) -> str:
    return settings.database.url.split("///", 1)[1]


def refusals(settings: Settings) -> list[str]:
    with sqlite3.connect(database_file(settings)) as db:
        rows = db.execute(
            "SELECT details FROM audit_events WHERE action = 'action_link.refused' ORDER BY id"
        ).fetchall()
    return [str(details) for (details,) in rows]


@pytest.fixture
def booked(zoom_app: str, zoom_settings: Settings) -> tuple[str, dict[str, str]]:
    book_meeting(zoom_app)
    deliver(zoom_settings)
    links = host_links(zoom_settings)
    assert set(links) == {"end", "rotate", "report"}
    return zoom_app, links


def test_host_ends_the_meeting_from_the_email_link(
    page: Any,  # noqa: F811
    booked: tuple[str, dict[str, str]],
    zoom_settings: Settings,
    zoom_sim: tuple[ZoomSimulator, str],
) -> None:
    app_url, links = booked
    sim, _ = zoom_sim
    end_url = links["end"]
    assert end_url.startswith(f"{app_url}/actions/pal.")

    page.goto(end_url)
    assert "/auth/login" in page.url
    page.click("#sign-in")
    page.fill("input[name=login]", "dana")
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.wait_for_url(end_url)
    # Following the link only asked: nothing has ended yet.
    assert "End this meeting now, for everyone in it?" in page.inner_text("#question")
    assert sim.ended == []
    assert link_row(zoom_settings, end_url) == (None, "delivered")

    page.click("#confirm-action")
    page.wait_for_selector("#outcome")
    assert "ended for everyone" in page.inner_text("#outcome")
    assert sim.ended == list(sim.meetings)
    used_at, state = link_row(zoom_settings, end_url)
    assert used_at is not None and state == "ended"

    # The same link a second time: refused, and nothing more happens.
    page.goto(end_url)
    assert "already been used" in page.inner_text("#refusal")
    assert len(sim.ended) == 1
    assert any('"used"' in details for details in refusals(zoom_settings))


class TestRefusals:
    def test_another_signed_in_user_is_refused_and_nothing_changes(
        self,
        booked: tuple[str, dict[str, str]],
        zoom_settings: Settings,
        zoom_sim: tuple[ZoomSimulator, str],
    ) -> None:
        app_url, links = booked
        sim, _ = zoom_sim
        path = urlsplit(links["end"]).path
        with httpx.Client(timeout=15.0) as client:
            walk = sign_in(client, app_url, "erin", next_path=path)
            assert walk.response is not None
            assert walk.response.status_code == 403
            assert "works only for them" in walk.response.text
            assert "Board prep" not in walk.response.text  # nothing about the meeting leaks
            # Erin's own CSRF token does not help either.
            mine = client.get(f"{app_url}/meetings/new")
            posted = client.post(f"{app_url}{path}", data={"csrf_token": csrf_from(mine.text)})
            assert posted.status_code == 403
        assert sim.ended == []
        assert link_row(zoom_settings, links["end"]) == (None, "delivered")
        assert sum('"other-user"' in details for details in refusals(zoom_settings)) == 2

    def test_an_expired_link_is_refused_and_nothing_changes(
        self,
        booked: tuple[str, dict[str, str]],
        zoom_settings: Settings,
        zoom_sim: tuple[ZoomSimulator, str],
    ) -> None:
        app_url, links = booked
        sim, _ = zoom_sim
        hex_id = urlsplit(links["end"]).path.rsplit("/", 1)[-1].split(".")[1]
        with sqlite3.connect(database_file(zoom_settings)) as db:
            db.execute(
                "UPDATE action_links SET expires_at = '2020-01-01 00:00:00.000000' WHERE id = ?",
                (str(uuid.UUID(hex_id)),),
            )
        with httpx.Client(timeout=15.0) as client:
            walk = sign_in(client, app_url, "dana", next_path=urlsplit(links["end"]).path)
            assert walk.response is not None
            assert walk.response.status_code == 410
            assert "expired" in walk.response.text
        assert sim.ended == []
        assert link_row(zoom_settings, links["end"]) == (None, "delivered")

    def test_a_get_never_acts_and_a_post_needs_the_csrf_token(
        self,
        booked: tuple[str, dict[str, str]],
        zoom_settings: Settings,
        zoom_sim: tuple[ZoomSimulator, str],
    ) -> None:
        app_url, links = booked
        sim, _ = zoom_sim
        path = urlsplit(links["end"]).path
        with httpx.Client(timeout=15.0) as client:
            walk = sign_in(client, app_url, "dana", next_path=path)
            assert walk.response is not None and walk.response.status_code == 200
            assert client.get(f"{app_url}{path}").status_code == 200
            assert client.post(f"{app_url}{path}", data={}).status_code == 403
        assert sim.ended == []
        assert link_row(zoom_settings, links["end"]) == (None, "delivered")

    def test_a_tampered_link_is_refused(self, booked: tuple[str, dict[str, str]]) -> None:
        app_url, links = booked
        path = urlsplit(links["end"]).path
        forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
        with httpx.Client(timeout=15.0) as client:
            walk = sign_in(client, app_url, "dana", next_path=forged)
            assert walk.response is not None and walk.response.status_code == 404

    def test_report_link_leads_to_the_incident_form(
        self, booked: tuple[str, dict[str, str]], zoom_settings: Settings
    ) -> None:
        app_url, links = booked
        path = urlsplit(links["report"]).path
        with httpx.Client(timeout=15.0) as client:
            walk = sign_in(client, app_url, "dana", next_path=path)
            assert walk.response is not None and walk.response.status_code == 200
            posted = client.post(
                f"{app_url}{path}", data={"csrf_token": csrf_from(walk.response.text)}
            )
            assert posted.status_code == 303
            assert posted.headers["location"].startswith("/incidents/new?meeting=")
        used_at, state = link_row(zoom_settings, links["report"])
        assert used_at is not None and state == "delivered"


def test_invitee_email_has_no_briefing_and_no_emergency_links(
    booked: tuple[str, dict[str, str]], zoom_settings: Settings
) -> None:
    (invitee,) = [m for m in messages(zoom_settings) if str(m["To"]).endswith("<ana@example.com>")]
    for subtype in ("plain", "html"):
        body = text_of(invitee, subtype)
        assert "/actions/" not in body
        assert "pal." not in body
        assert "security card" not in body.lower()
        assert "End Meeting for All" not in body
    (host,) = [m for m in messages(zoom_settings) if str(m["To"]).endswith("<dana@example.com>")]
    assert "End Meeting for All" in text_of(host)  # Zoom's own menu name


def test_rotate_link_replaces_the_meeting_once(
    booked: tuple[str, dict[str, str]],
    zoom_settings: Settings,
    zoom_sim: tuple[ZoomSimulator, str],
) -> None:
    app_url, links = booked
    sim, _ = zoom_sim
    (old_zoom_id,) = list(sim.meetings)
    path = urlsplit(links["rotate"]).path
    with httpx.Client(timeout=15.0) as client:
        walk = sign_in(client, app_url, "dana", next_path=path)
        assert walk.response is not None and walk.response.status_code == 200
        csrf = csrf_from(walk.response.text)
        done = client.post(f"{app_url}{path}", data={"csrf_token": csrf})
        assert done.status_code == 200, done.text[:2000]
        assert "rotated" in done.text
        again = client.post(f"{app_url}{path}", data={"csrf_token": csrf})
        assert again.status_code == 410
    # The leaked meeting is gone from Zoom and a new one stands in its place.
    assert sim.deleted == [old_zoom_id]
    assert len(sim.meetings) == 1 and old_zoom_id not in sim.meetings
    assert link_row(zoom_settings, links["rotate"])[1] == "rotated"
