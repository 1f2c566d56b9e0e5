"""The meeting page's controls: confirmation first, CSRF on every POST, the same services as
the API, an attendance table with remove buttons, and responders acting on any meeting.

The browser session is a real signed session cookie, made here with the app's secret the
way Starlette's SessionMiddleware makes it (the sign-in flow itself is tested in e2e)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from provisioner.app import create_app
from provisioner.providers.base import Participant
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.meetings.responders import zoom_like
from tests.support.meeting_fixtures import (
    BROWSER_OIDC,
    SettingsFactory,
    audit_of,
    browser_session,
    running_meeting,
)

CSRF = "csrf-token-for-tests"
MALLORY = Participant(name="Mallory <b>", email=None, provider_participant_id="p-66")
ANA = Participant(name="Ana Lima", email="ana@example.com", provider_participant_id="p-2")


@pytest.fixture
def settings(settings_with: SettingsFactory) -> Settings:
    return settings_with(oidc=BROWSER_OIDC)


@pytest.fixture
async def browser(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    """A client without cookies of its own; each request names its session."""
    app = create_app(settings, state=state, run_worker=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
    ) as http:
        yield http


HOST, _ = browser_session("dana", "dana@example.com", "Dana", "employees", csrf=CSRF)
RESPONDER, _ = browser_session("rosa", "rosa@example.com", "Rosa", "responders", csrf=CSRF)
STRANGER, _ = browser_session("erin", "erin@example.com", "Erin", "employees", csrf=CSRF)


def hidden_form(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


class TestMeetingPage:
    async def test_attendance_table_flags_the_stranger_with_a_remove_button(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        fake.participants = [ANA, MALLORY]
        meeting_id = await running_meeting(client, host_headers)
        page = await browser.get(f"/meetings/{meeting_id}", headers=HOST)
        assert page.status_code == 200
        assert 'id="attendance"' in page.text
        assert "Mallory &lt;b&gt;" in page.text  # a display name is text, never markup
        assert '<tr class="attendance-unknown">' in page.text
        assert f"/meetings/{meeting_id}/controls/expel?participant=p-66" in page.text
        assert 'id="control-lock"' in page.text
        assert 'id="emergency-end"' in page.text  # the host's own end/rotate links

    async def test_lock_asks_first_then_needs_the_csrf_token(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting_id = await running_meeting(client, host_headers)
        confirm = await browser.get(f"/meetings/{meeting_id}/controls/lock", headers=HOST)
        assert confirm.status_code == 200
        assert "Lock the meeting?" in confirm.text
        assert fake.locked == []  # asking is not doing
        forged = await browser.post(f"/meetings/{meeting_id}/controls/lock", headers=HOST)
        assert forged.status_code == 403
        assert fake.locked == []
        done = await browser.post(
            f"/meetings/{meeting_id}/controls/lock", headers=HOST, data=hidden_form(confirm.text)
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/meetings/{meeting_id}?done=lock"
        assert fake.locked == fake.created
        after = await browser.get(done.headers["location"], headers=HOST)
        assert (
            '<p class="notice" role="status" id="control-done">The meeting is locked' in after.text
        )

    async def test_expel_from_the_attendance_table(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        fake.participants = [MALLORY]
        meeting_id = await running_meeting(client, host_headers)
        confirm = await browser.get(
            f"/meetings/{meeting_id}/controls/expel",
            params={"participant": "p-66", "name": "Mallory <b>"},
            headers=HOST,
        )
        assert confirm.status_code == 200
        assert "Mallory &lt;b&gt;" in confirm.text
        form = hidden_form(confirm.text)
        assert form["participant_id"] == "p-66"
        done = await browser.post(f"/meetings/{meeting_id}/controls/expel", headers=HOST, data=form)
        assert done.status_code == 303
        assert fake.expelled == ["p-66"]
        events = await audit_of(state, meeting_id)
        assert ("meeting.participant_expelled", "dana") in [(a, actor) for a, actor, _ in events]

    async def test_the_confirm_page_shows_the_providers_name_not_the_urls(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        fake.participants = [MALLORY, ANA]
        meeting_id = await running_meeting(client, host_headers)
        crafted = await browser.get(
            f"/meetings/{meeting_id}/controls/expel",
            params={"participant": "p-2", "name": "Mallory"},
            headers=HOST,
        )
        assert crafted.status_code == 200
        shown = re.search(r'<dd id="participant">(.*?)</dd>', crafted.text)
        assert shown is not None and "Ana Lima" in shown.group(1)
        assert "Mallory" not in shown.group(1)
        fake.participants = [ANA]
        gone = await browser.get(
            f"/meetings/{meeting_id}/controls/expel",
            params={"participant": "p-99", "name": "Mallory"},
            headers=HOST,
        )
        shown = re.search(r'<dd id="participant">(.*?)</dd>', gone.text)
        assert shown is not None and "p-99" in shown.group(1) and "Mallory" not in gone.text

    async def test_unsupported_lock_shows_the_hint_instead_of_a_button(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
    ) -> None:
        zoom = zoom_like(state)
        meeting_id = await running_meeting(client, host_headers, provider="zoom")
        page = await browser.get(f"/meetings/{meeting_id}", headers=HOST)
        assert 'id="control-lock"' not in page.text
        assert "Security &gt; Lock Meeting" in page.text
        confirm = await browser.get(f"/meetings/{meeting_id}/controls/lock", headers=HOST)
        refused = await browser.post(
            f"/meetings/{meeting_id}/controls/lock", headers=HOST, data=hidden_form(confirm.text)
        )
        assert refused.status_code == 422
        assert 'id="control-error"' in refused.text
        assert zoom.locked == []


class TestResponderPages:
    async def test_responder_sees_controls_but_not_the_host_link_and_can_rotate(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting_id = await running_meeting(client, host_headers)
        host_page = await browser.get(f"/meetings/{meeting_id}", headers=HOST)
        assert 'id="join-url"' in host_page.text
        page = await browser.get(f"/meetings/{meeting_id}", headers=RESPONDER)
        assert page.status_code == 200
        assert 'id="join-url"' not in page.text
        assert fake.created[0] not in page.text  # no join link anywhere on the page
        assert 'id="control-rotate"' in page.text and 'id="emergency-end"' not in page.text

        confirm = await browser.get(f"/meetings/{meeting_id}/controls/rotate", headers=RESPONDER)
        form = hidden_form(confirm.text) | {"reason": "seen on a forum"}
        done = await browser.post(
            f"/meetings/{meeting_id}/controls/rotate", headers=RESPONDER, data=form
        )
        assert done.status_code == 303
        new_id = done.headers["location"].split("/")[2].split("?")[0]
        assert new_id != meeting_id
        assert fake.deleted == [fake.created[0]]
        events = await audit_of(state, meeting_id)
        rotated = next(d for a, _, d in events if a == "meeting.rotated")
        assert rotated == rotated | {"as": "responder", "reason": "seen on a forum"}

    async def test_a_rotation_reason_with_control_characters_is_refused_as_the_api_refuses_it(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting_id = await running_meeting(client, host_headers)
        confirm = await browser.get(f"/meetings/{meeting_id}/controls/rotate", headers=RESPONDER)
        form = hidden_form(confirm.text) | {"reason": "x\x1b[31my\x07"}
        refused = await browser.post(
            f"/meetings/{meeting_id}/controls/rotate", headers=RESPONDER, data=form
        )
        assert refused.status_code == 422
        assert 'id="control-error"' in refused.text and "one line of plain text" in refused.text
        assert fake.deleted == []  # nothing rotated
        assert "meeting.rotated" not in [a for a, _, _ in await audit_of(state, meeting_id)]

    async def test_a_stranger_gets_nothing(
        self,
        client: httpx.AsyncClient,
        browser: httpx.AsyncClient,
        host_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        meeting_id = await running_meeting(client, host_headers)
        assert (await browser.get(f"/meetings/{meeting_id}", headers=STRANGER)).status_code == 404
        confirm = await browser.get(f"/meetings/{meeting_id}/controls/end", headers=STRANGER)
        assert confirm.status_code == 404
        posted = await browser.post(
            f"/meetings/{meeting_id}/controls/end", headers=STRANGER, data={"csrf_token": CSRF}
        )
        assert posted.status_code == 404
        assert fake.ended == []
