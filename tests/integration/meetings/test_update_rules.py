"""PATCH /api/v1/meetings/{id}: the rules a create checks hold for a change too, and a
change is checked only on what it changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from provisioner.delivery.models import Delivery
from provisioner.meetings.models import Meeting
from provisioner.state import AppState
from tests.factories import meeting_body
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import created_meeting, fake  # noqa: F401 (fixture)


def people(count: int) -> list[dict[str, str]]:
    return [{"email": f"p{n}@example.com", "name": f"Person {n}"} for n in range(count)]


async def meeting_held(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    state: AppState,
    *,
    started: timedelta,
    ends_in: timedelta,
) -> dict[str, Any]:
    """A meeting on the fake provider that started `started` ago and ends `ends_in` from
    now (negative: it is over), as the clock sees it; provisioned now, then moved."""
    now = datetime.now(UTC).replace(microsecond=0)
    meeting = await created_meeting(client, headers, provider="fake", start=now.isoformat())
    async with state.db.session() as session:
        await session.execute(
            update(Meeting)
            .where(Meeting.id == meeting["id"])
            .values(starts_at=now - started, ends_at=now + ends_in)
        )
    meeting["start"] = (now - started).isoformat()
    return meeting


async def deliveries_of(state: AppState, meeting_id: str) -> int:
    async with state.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.meeting_id == meeting_id)
        )
    return int(count or 0)


async def test_a_new_invite_list_is_held_to_the_configured_limit(
    client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
) -> None:
    limit = state.settings.api.max_invitees
    refused = await client.post(
        "/api/v1/meetings", json=meeting_body(invitees=people(limit + 1)), headers=host_headers
    )
    assert refused.status_code == 422
    meeting = await created_meeting(client, host_headers, invitees=people(1))
    before = await deliveries_of(state, meeting["id"])

    patched = await client.patch(
        f"/api/v1/meetings/{meeting['id']}",
        json={"invitees": people(limit + 1)},
        headers=host_headers,
    )

    assert patched.status_code == 422, patched.text
    assert patched.json()["errors"] == refused.json()["errors"]
    assert patched.json()["errors"] == [
        {"field": "invitees", "reason": f"at most {limit} invitees per meeting"}
    ]
    assert await deliveries_of(state, meeting["id"]) == before  # nobody was invited


async def test_a_running_meeting_can_be_renamed_and_get_a_late_invitee(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,  # noqa: F811
) -> None:
    meeting = await meeting_held(
        client, host_headers, state, started=timedelta(hours=1), ends_in=timedelta(minutes=30)
    )
    url = f"/api/v1/meetings/{meeting['id']}"

    renamed = await client.patch(url, json={"topic": "Renamed"}, headers=host_headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["topic"] == "Renamed"
    late = [*meeting_body()["invitees"], {"email": "late@example.com", "name": "Late"}]
    invited = await client.patch(url, json={"invitees": late}, headers=host_headers)
    assert invited.status_code == 200, invited.text
    assert "late@example.com" in {i["email"] for i in invited.json()["invitees"]}

    # Moving it into the past is still refused, naming the field that was sent.
    past = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).isoformat()
    moved = await client.patch(url, json={"start": past}, headers=host_headers)
    assert moved.status_code == 422
    assert moved.json()["errors"] == [{"field": "start", "reason": "must not be in the past"}]


async def test_an_explicit_null_is_refused_naming_the_field_and_invites_nobody(
    client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
) -> None:
    meeting = await created_meeting(client, host_headers)
    before = await deliveries_of(state, meeting["id"])

    for field in ("topic", "start", "duration_minutes", "timezone", "invitees"):
        answer = await client.patch(
            f"/api/v1/meetings/{meeting['id']}", json={field: None}, headers=host_headers
        )
        assert answer.status_code == 422, (field, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in answer.json()["errors"]] == [field]

    assert await deliveries_of(state, meeting["id"]) == before


async def test_a_meeting_over_by_the_clock_is_not_changed_and_nobody_is_invited(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,  # noqa: F811
) -> None:
    # It ran yesterday; nobody pressed "end".
    meeting = await meeting_held(
        client, host_headers, state, started=timedelta(days=1), ends_in=-timedelta(hours=23)
    )
    before = await deliveries_of(state, meeting["id"])
    late = [*meeting_body()["invitees"], {"email": "late@example.com", "name": "Late"}]

    answer = await client.patch(
        f"/api/v1/meetings/{meeting['id']}", json={"invitees": late}, headers=host_headers
    )

    assert answer.status_code == 409, answer.text
    assert answer.json()["type"].endswith("/meeting-not-changeable")
    assert "over" in answer.json()["detail"]
    assert await deliveries_of(state, meeting["id"]) == before  # no link went out again


async def test_a_calendar_sending_the_unchanged_start_of_a_running_meeting_is_fine(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,  # noqa: F811
) -> None:
    meeting = await meeting_held(
        client, host_headers, state, started=timedelta(hours=1), ends_in=timedelta(minutes=30)
    )
    url = f"/api/v1/meetings/{meeting['id']}"

    synced = await client.patch(
        url, json={"start": meeting["start"], "topic": "Synced"}, headers=host_headers
    )
    assert synced.status_code == 200, synced.text
    cut_short = await client.patch(url, json={"duration_minutes": 30}, headers=host_headers)
    assert cut_short.status_code == 422
    assert cut_short.json()["errors"] == [
        {"field": "duration_minutes", "reason": "would end the meeting in the past"}
    ]
