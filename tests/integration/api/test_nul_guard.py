"""NUL (U+0000) in a request is a 422 naming where it was, never a 500, on both databases.

PostgreSQL cannot store NUL in text: before the guard, a topic, an incident summary, a
note, a path id or an audit filter with one failed in the database as a 500.
"""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.audit.models import AuditEvent
from provisioner.meetings.models import Meeting
from provisioner.state import AppState
from tests.factories import meeting_body


def assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/invalid-request")
    assert problem["errors"] == [
        {"field": field, "reason": "must not contain the NUL character (U+0000)"}
    ]
    assert "\x00" not in response.text and "\\u0000" not in response.text


class TestJsonBodies:
    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"topic": "plan\x00ning"}, "topic"),
            ({"invitees": [{"email": "ana@example.com", "name": "A\x00na"}]}, "invitees[0].name"),
            ({"timezone": "Europe/\x00Berlin"}, "timezone"),
        ],
    )
    async def test_a_create_with_nul_is_refused_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        overrides: dict[str, object],
        field: str,
    ) -> None:
        response = await client.post(
            "/api/v1/meetings", json=meeting_body(**overrides), headers=host_headers
        )
        assert_refused(response, field)
        async with state.db.session() as session:
            assert await session.scalar(select(func.count(Meeting.id))) == 0
            assert await session.scalar(select(func.count(AuditEvent.id))) == 0

    async def test_an_incident_summary_with_nul_is_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        body = {"meeting_id": "m", "summary": "bad\x00", "statement": "what happened"}
        response = await client.post("/api/v1/incidents", json=body, headers=host_headers)
        assert_refused(response, "summary")

    async def test_an_escaped_backslash_before_u0000_is_ordinary_text(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        # The six bytes \u0000 appear in the JSON, but they spell a backslash and "u0000".
        topic = "regex \\u0000 explained"
        raw = json.dumps(meeting_body(topic=topic)).encode()
        assert b"\\\\u0000" in raw
        response = await client.post(
            "/api/v1/meetings",
            content=raw,
            headers=host_headers | {"Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["topic"] == topic


class TestUrls:
    async def test_a_path_id_with_nul_is_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        for path in ("/api/v1/meetings/a%00b", "/api/v1/incidents/a%00b"):
            assert_refused(await client.get(path, headers=host_headers), "path")

    async def test_a_query_parameter_with_nul_is_refused_by_name(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        response = await client.get("/api/v1/admin/audit?action=%00", headers=host_headers)
        assert_refused(response, "action")
        response = await client.get("/api/v1/meetings?limit=5&cursor=a%00", headers=host_headers)
        assert_refused(response, "cursor")


class TestForms:
    async def test_a_form_field_with_nul_is_refused_by_name(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            "/meetings/new",
            content=b"topic=a%00b&duration_minutes=30",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert_refused(response, "topic")


class TestUntouched:
    async def test_a_body_over_the_limit_is_still_413(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        limit = state.settings.api.max_body_bytes
        raw = json.dumps(meeting_body(topic="x" * limit)).encode()
        response = await client.post(
            "/api/v1/meetings",
            content=raw,
            headers=host_headers | {"Content-Type": "application/json"},
        )
        assert response.status_code == 413


class TestMultipartForms:
    async def test_a_page_form_sent_as_multipart_is_guarded_too(
        self, client: httpx.AsyncClient
    ) -> None:
        # Any page form may arrive as multipart: its text fields are refused by name, as
        # a URL-encoded form's are (a follow-ups form built its model from it: a 500).
        response = await client.post(
            "/incidents/some-id/follow-ups",
            files={
                "law_enforcement_contacted": (None, "yes"),
                "law_enforcement_reference": (None, "case\x00123"),
            },
        )
        assert_refused(response, "law_enforcement_reference")
