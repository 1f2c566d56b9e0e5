"""Bad input gets a clear 4xx problem naming the field, never a 500, and creates nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.meetings.models import Meeting
from provisioner.state import AppState
from tests.factories import meeting_body

PROBLEM = "application/problem+json"


def without(key: str) -> dict[str, Any]:
    body = meeting_body()
    del body[key]
    return body


PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()
MANY = [{"email": f"p{i}@example.com", "name": f"P{i}"} for i in range(501)]

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing topic", without("topic"), "topic"),
    ("missing invitees", without("invitees"), "invitees"),
    ("missing start", without("start"), "start"),
    ("end before start", meeting_body(duration_minutes=-30), "duration_minutes"),
    ("zero duration", meeting_body(duration_minutes=0), "duration_minutes"),
    ("too long", meeting_body(duration_minutes=5000), "duration_minutes"),
    ("start in the past", meeting_body(start=PAST), "start"),
    ("unknown provider", meeting_body(provider="skype"), "provider"),
    ("malformed provider", meeting_body(provider="Zoom Meetings!"), "provider"),
    (
        "malformed email",
        meeting_body(invitees=[{"email": "not-an-email", "name": "X"}]),
        "invitees[0].email",
    ),
    (
        "header injection in name",
        meeting_body(invitees=[{"email": "a@example.com", "name": "A\r\nBcc: x@evil.test"}]),
        "invitees[0].name",
    ),
    ("oversized invitee list", meeting_body(invitees=MANY), "invitees"),
    ("empty invitee list", meeting_body(invitees=[]), "invitees"),
    (
        "duplicate invitee",
        meeting_body(
            invitees=[
                {"email": "ana@example.com", "name": "Ana"},
                {"email": "ANA@example.com", "name": "Ana again"},
            ]
        ),
        "invitees[1].email",
    ),
    ("unknown time zone", meeting_body(timezone="Mars/Olympus"), "timezone"),
    ("unknown field", meeting_body(colour="red"), "colour"),
    ("unknown setting", meeting_body(settings={"chatt": "off"}), "settings.chatt"),
    ("bad setting value", meeting_body(settings={"chat": "sometimes"}), "settings.chat"),
    ("topic too long", meeting_body(topic="x" * 201), "topic"),
    ("start not a date", meeting_body(start="tomorrow-ish"), "start"),
]


class TestBadInput:
    @pytest.mark.parametrize(("case", "body", "field"), CASES, ids=[c[0] for c in CASES])
    async def test_is_a_4xx_problem_naming_the_field(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        case: str,
        body: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["status"] == 422
        assert field in [e["field"] for e in problem["errors"]]
        async with state.db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Meeting)) == 0

    async def test_invalid_json(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/api/v1/meetings",
            content=b"{not json",
            headers=host_headers | {"content-type": "application/json"},
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM

    async def test_body_over_the_limit_is_413(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/api/v1/meetings",
            content=b"x" * 300_000,
            headers=host_headers | {"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM

    async def test_bad_idempotency_key_header(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        response = await client.post(
            "/api/v1/meetings",
            json=meeting_body(),
            headers=host_headers | {"Idempotency-Key": "x" * 300},
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "Idempotency-Key"

    async def test_unknown_route_is_a_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/nothing")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
