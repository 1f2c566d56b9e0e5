"""Emergency actions from the meeting page and from the host's link: ownership first, an
incomplete rotation told honestly, and a link given back when something unexpected broke."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from provisioner.actions.models import ActionLink
from provisioner.actions.tokens import ActionLinkSigner
from provisioner.app import create_app
from provisioner.audit.models import AuditEvent
from provisioner.db import utcnow
from provisioner.providers.base import MeetingRef
from provisioner.providers.errors import ProviderRetriable
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import (
    BROWSER_OIDC,
    SettingsFactory,
    browser_session,
    running_meeting,
)

CSRF = "csrf-token-for-tests"
HOST, _ = browser_session("dana", "dana@example.com", "Dana", "employees", csrf=CSRF)
STRANGER, _ = browser_session("erin", "erin@example.com", "Erin", "employees", csrf=CSRF)


@pytest.fixture
def settings(settings_with: SettingsFactory) -> Settings:
    return settings_with(oidc=BROWSER_OIDC)


@pytest.fixture
async def browser(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, state=state, run_worker=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://provisioner.test") as http:
        yield http


async def link_events(state: AppState, meeting_id: str) -> list[tuple[str, dict[str, object]]]:
    async with state.db.session() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target_id == meeting_id, AuditEvent.action.like("action_link.%"))
            .order_by(AuditEvent.id)
        )
        return [(row.action, dict(row.details)) for row in rows]


async def host_link(state: AppState, meeting_id: str, action: str) -> tuple[str, str]:
    """An unused emergency link of Dana's for `meeting_id`, as her invitation carries it:
    its id and its token."""
    link_id = str(uuid.uuid4())
    async with state.db.session() as session:
        session.add(
            ActionLink(
                id=link_id,
                meeting_id=meeting_id,
                delivery_id=str(uuid.uuid4()),
                host_subject="dana",
                action=action,
                expires_at=utcnow() + timedelta(hours=2),
            )
        )
    return link_id, ActionLinkSigner.from_cipher(state.cipher).token(link_id)


async def test_report_from_the_page_checks_ownership_first(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
) -> None:
    meeting_id = await running_meeting(client, host_headers)
    response = await browser.post(
        f"/meetings/{meeting_id}/emergency/report",
        headers=STRANGER,
        data={"csrf_token": CSRF},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert await link_events(state, meeting_id) == []


async def test_an_incomplete_rotation_is_recorded_and_shown_as_incomplete(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
) -> None:
    class KeepsOldMeeting(FakeProvider):
        async def delete(self, meeting: MeetingRef) -> None:
            raise ProviderRetriable("503 from the provider", provider="fake")

    state.providers = {"fake": KeepsOldMeeting()}
    meeting_id = await running_meeting(client, host_headers)
    response = await browser.post(
        f"/meetings/{meeting_id}/emergency/rotate", headers=HOST, data={"csrf_token": CSRF}
    )
    assert response.status_code == 200, response.text
    assert "Only partly done" in response.text
    assert "old link may still work" in response.text
    assert "cannot be used" not in response.text and "could not be done" not in response.text
    [(action, details)] = await link_events(state, meeting_id)
    assert action == "action_link.used" and details["outcome"] == "incomplete"


async def test_an_unexpected_error_gives_the_link_back(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
) -> None:
    class Broken(FakeProvider):
        async def end(self, meeting: MeetingRef) -> None:
            raise RuntimeError("a bug, not a provider refusal")

    state.providers = {"fake": Broken()}
    meeting_id = await running_meeting(client, host_headers)
    link_id, token = await host_link(state, meeting_id, "end")

    response = await browser.post(f"/actions/{token}", headers=HOST, data={"csrf_token": CSRF})

    assert response.status_code == 500
    async with state.db.session() as session:
        link = await session.get(ActionLink, link_id)
        assert link is not None and link.used_at is None and link.used_by is None
    [(action, details)] = await link_events(state, meeting_id)
    assert action == "action_link.refused" and details["outcome"] == "error"


async def test_a_rotate_link_of_a_meeting_already_replaced_says_so_and_is_given_back(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
) -> None:
    # The meeting was rotated (by the API, a responder, the page); later the new link
    # leaks and the host clicks "Rotate" in the invitation they have: the old one's.
    old_id = await running_meeting(client, host_headers)
    link_id, token = await host_link(state, old_id, "rotate")
    rotated = await client.post(f"/api/v1/meetings/{old_id}/rotate", headers=host_headers)
    assert rotated.status_code == 201, rotated.text
    created = list(fake.created)

    response = await browser.post(f"/actions/{token}", headers=HOST, data={"csrf_token": CSRF})

    # It said "rotated" and did nothing to the live meeting; now it says what happened.
    assert response.status_code == 409, response.text
    assert "already replaced" in response.text and "newest" in response.text
    assert "has been rotated" not in response.text
    assert fake.created == created  # no meeting made, none claimed
    async with state.db.session() as session:
        link = await session.get(ActionLink, link_id)
        assert link is not None and link.used_at is None  # given back
