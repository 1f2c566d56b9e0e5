"""The meetings API end to end on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.app import build_state, close_state, create_app
from provisioner.audit.models import AuditEvent
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.db import utcnow
from provisioner.delivery.models import Delivery
from provisioner.meetings import service
from provisioner.meetings.models import Meeting
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.factories import meeting_body

PROBLEM = "application/problem+json"


async def count(state: AppState, model: Any) -> int:
    async with state.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def actions(state: AppState) -> list[str]:
    async with state.db.session() as session:
        return list(
            (await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))).all()
        )


class TestCreateMeeting:
    async def test_creates_verified_meeting_with_host_join(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/api/v1/meetings/{body['id']}"
        assert body["state"] == "verified"
        assert body["provider"] == "jitsi"
        assert body["host_join"]["url"].startswith("https://meet.example.com/")
        assert "sign_in_required" in body["enforced"]
        assert "waiting_room" in body["not_enforced"]
        assert {i["email"] for i in body["invitees"]} == {
            "ana@example.com",
            "ben@example.com",
            "chen@partner.example.org",
        }
        assert all(i["personal_link"] for i in body["invitees"])

    async def test_queues_one_delivery_per_recipient_and_audits(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        async with state.db.session() as session:
            rows = (await session.scalars(select(Delivery))).all()
        assert sorted(d.recipient_email for d in rows) == [
            "ana@example.com",
            "ben@example.com",
            "chen@partner.example.org",
            "dana@example.com",
        ]
        assert [d.role for d in rows].count("host") == 1
        assert await actions(state) == [
            "meeting.requested",
            "meeting.created",
            "meeting.verified",
            "delivery.queued",
        ]

    async def test_host_listed_as_invitee_is_not_invited_twice(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        invitees = [
            {"email": "dana@example.com", "name": "Dana"},
            {"email": "ana@example.com", "name": "Ana"},
        ]
        response = await client.post(
            "/api/v1/meetings", json=meeting_body(invitees=invitees), headers=host_headers
        )
        assert response.status_code == 201
        assert [i["email"] for i in response.json()["invitees"]] == ["ana@example.com"]
        assert await count(state, Delivery) == 2

    async def test_naive_start_is_read_in_the_meeting_time_zone(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        body = meeting_body(start="2030-07-01T09:00:00", timezone="America/New_York")
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 201
        assert response.json()["start"].startswith("2030-07-01T13:00:00")  # EDT = UTC-4


class TestPolicyRefusal:
    async def test_loosening_locked_settings_is_422_naming_each(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        body = meeting_body(settings={"join_before_host": True, "waiting_room": False})
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["type"].endswith("/policy-violation")
        assert {e["field"] for e in problem["errors"]} == {
            "settings.join_before_host",
            "settings.waiting_room",
        }
        assert await count(state, Meeting) == 0
        assert await count(state, Delivery) == 0
        assert await actions(state) == ["meeting.refused"]

    async def test_tightening_is_always_allowed(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        body = meeting_body(settings={"chat": "off", "passcode_min_length": 16})
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 201
        settings = response.json()["settings"]
        assert settings["chat"] == "off"
        assert settings["passcode_min_length"] == 16
        assert len(response.json()["host_join"]["passcode"]) >= 16

    async def test_invitee_outside_allowed_domains_is_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        invitees = [
            {"email": "ana@example.com", "name": "Ana"},
            {"email": "mallory@elsewhere.test", "name": "Mallory"},
        ]
        response = await client.post(
            "/api/v1/meetings", json=meeting_body(invitees=invitees), headers=host_headers
        )
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["invitees[1].email"]
        assert await count(state, Meeting) == 0


class TestIdempotency:
    async def test_same_key_same_body_replays_first_response(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        headers = host_headers | {"Idempotency-Key": "k-1"}
        body = meeting_body()
        first = await client.post("/api/v1/meetings", json=body, headers=headers)
        second = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()
        assert await count(state, Meeting) == 1
        assert await count(state, Delivery) == 4

    async def test_same_key_different_body_is_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        headers = host_headers | {"Idempotency-Key": "k-2"}
        await client.post("/api/v1/meetings", json=meeting_body(), headers=headers)
        response = await client.post(
            "/api/v1/meetings", json=meeting_body(topic="Other"), headers=headers
        )
        assert response.status_code == 422
        assert response.json()["type"].endswith("/idempotency-key-reused")
        assert await count(state, Meeting) == 1

    async def test_concurrent_duplicates_create_one_meeting(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        headers = host_headers | {"Idempotency-Key": "k-concurrent"}
        body = meeting_body()
        responses = await asyncio.gather(
            *(client.post("/api/v1/meetings", json=body, headers=headers) for _ in range(8))
        )
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 7
        assert await count(state, Meeting) == 1
        assert await count(state, Delivery) == 4

    async def test_keys_are_scoped_to_the_caller(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        issuer: LocalIssuer,
        state: AppState,
    ) -> None:
        other = issuer.token(
            subject="erin", email="erin@example.com", name="Erin", groups=["employees"]
        )
        body = meeting_body()
        a = await client.post(
            "/api/v1/meetings", json=body, headers=host_headers | {"Idempotency-Key": "shared"}
        )
        b = await client.post(
            "/api/v1/meetings",
            json=body,
            headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "shared"},
        )
        assert a.status_code == b.status_code == 201
        assert a.json()["id"] != b.json()["id"]
        assert await count(state, Meeting) == 2

    async def test_refused_request_does_not_burn_the_key(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        headers = host_headers | {"Idempotency-Key": "k-3"}
        bad = meeting_body(settings={"join_before_host": True})
        assert (await client.post("/api/v1/meetings", json=bad, headers=headers)).status_code == 422
        good = await client.post("/api/v1/meetings", json=bad | {"settings": None}, headers=headers)
        assert good.status_code == 201

    async def test_a_retry_after_the_start_has_passed_replays_the_first_answer(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A calendar client that timed out retries later with the same key and body: it
        # must learn that its meeting exists, not be told the start is in the past.
        headers = host_headers | {"Idempotency-Key": "k-late"}
        body = meeting_body()  # a week ahead
        first = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert first.status_code == 201
        # A week and a day later, as the create's checks see the time.
        monkeypatch.setattr(service, "utcnow", lambda: utcnow() + timedelta(days=8))

        retry = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert retry.status_code == 201, retry.text
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()
        assert await count(state, Meeting) == 1

        # Without the key, or with another body, the refusal stands.
        fresh = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert fresh.status_code == 422 and fresh.json()["errors"][0]["field"] == "start"
        other = await client.post(
            "/api/v1/meetings", json=body | {"topic": "Other"}, headers=headers
        )
        assert other.status_code == 422 and other.json()["errors"][0]["field"] == "start"
        assert await count(state, Meeting) == 1


class TestReadMeetings:
    async def test_list_and_get_my_meetings(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        created = [
            (
                await client.post(
                    "/api/v1/meetings", json=meeting_body(topic=f"M{i}"), headers=host_headers
                )
            ).json()["id"]
            for i in range(3)
        ]
        page = await client.get("/api/v1/meetings?limit=2", headers=host_headers)
        assert page.status_code == 200
        first = page.json()
        assert [m["id"] for m in first["data"]] == created[::-1][:2]
        assert "host_join" not in first["data"][0]
        rest = (
            await client.get(
                f"/api/v1/meetings?limit=2&cursor={first['next_cursor']}", headers=host_headers
            )
        ).json()
        assert [m["id"] for m in rest["data"]] == [created[0]]
        assert rest["next_cursor"] is None
        detail = await client.get(f"/api/v1/meetings/{created[0]}", headers=host_headers)
        assert detail.status_code == 200
        assert detail.headers["cache-control"] == "no-store"
        assert detail.json()["host_join"]["url"]
        assert {i["delivery_status"] for i in detail.json()["invitees"]} == {"pending"}

    async def test_someone_elses_meeting_is_not_found(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], issuer: LocalIssuer
    ) -> None:
        meeting_id = (
            await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        ).json()["id"]
        other = {
            "Authorization": "Bearer "
            + issuer.token(
                subject="erin", email="erin@example.com", name="Erin", groups=["employees"]
            )
        }
        response = await client.get(f"/api/v1/meetings/{meeting_id}", headers=other)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        listed = (await client.get("/api/v1/meetings", headers=other)).json()
        assert listed["data"] == []

    async def test_bad_cursor_is_422(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        response = await client.get("/api/v1/meetings?cursor=!!!", headers=host_headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "cursor"


class TestPolicyAndHealth:
    async def test_effective_policy_for_caller(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(
            subject="x", email="x@example.com", name="X", groups=["employees", "executives"]
        )
        response = await client.get("/api/v1/policy", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        controls = response.json()["controls"]
        assert controls["chat"]["value"] == "off"
        assert controls["chat"]["locked"] is True

    async def test_health_and_readiness(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "providers": "ok", "queue": "ok"}

    async def test_openapi_lists_problem_responses(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()
        create = schema["paths"]["/api/v1/meetings"]["post"]
        assert create["operationId"] == "meetings-create_meeting"
        assert {"401", "403", "409", "422", "503"} <= set(create["responses"])
        assert "Problem" in schema["components"]["schemas"]


class TestIdempotencyAcrossReplicas:
    async def test_two_app_instances_on_one_database_create_one_meeting(
        self, settings: Settings, state: AppState, host_headers: dict[str, str]
    ) -> None:
        """Two replicas (own engines, own pools) race on one key: one meeting, one replay."""
        other_state = build_state(settings)
        apps = [create_app(settings, state=s, run_worker=False) for s in (state, other_state)]
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://replica.test")
            for a in apps
        ]
        try:
            body = meeting_body()
            headers = host_headers | {"Idempotency-Key": "replicas"}
            responses = await asyncio.gather(
                *(
                    clients[i % 2].post("/api/v1/meetings", json=body, headers=headers)
                    for i in range(6)
                )
            )
        finally:
            for http in clients:
                await http.aclose()
            await close_state(other_state)
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
        assert await count(state, Meeting) == 1
        assert await count(state, Delivery) == 4


class TestOnBehalfIdempotency:
    async def test_keys_belong_to_the_integration_not_the_host(
        self, client: httpx.AsyncClient, issuer: LocalIssuer, state: AppState
    ) -> None:
        body = meeting_body(on_behalf_of={"email": "dana@example.com", "name": "Dana Host"})
        calendar_a = {
            "Authorization": "Bearer " + issuer.client_token("calendar-a"),
            "Idempotency-Key": "event-1",
        }
        calendar_b = {
            "Authorization": "Bearer " + issuer.client_token("calendar-b"),
            "Idempotency-Key": "event-1",
        }
        first = await client.post("/api/v1/meetings", json=body, headers=calendar_a)
        replay = await client.post("/api/v1/meetings", json=body, headers=calendar_a)
        other = await client.post("/api/v1/meetings", json=body, headers=calendar_b)
        assert first.status_code == replay.status_code == other.status_code == 201
        assert replay.json()["id"] == first.json()["id"]
        assert other.json()["id"] != first.json()["id"]
        assert first.json()["host_join"] is None and replay.json()["host_join"] is None
        assert await count(state, Meeting) == 2


class TestUnverifiedEmailOwnsNothing:
    async def test_an_unverified_address_does_not_unlock_meetings_made_for_it(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        body = meeting_body(on_behalf_of={"email": "dana@example.com", "name": "Dana Host"})
        calendar = {"Authorization": "Bearer " + issuer.client_token("calendar-a")}
        created = await client.post("/api/v1/meetings", json=body, headers=calendar)
        assert created.status_code == 201
        meeting_id = created.json()["id"]

        def as_dana(**claims: Any) -> dict[str, str]:
            token = issuer.token(
                subject="someone",
                email="dana@example.com",
                name="D",
                groups=["employees"],
                **claims,
            )
            return {"Authorization": f"Bearer {token}"}

        unverified = await client.get(
            f"/api/v1/meetings/{meeting_id}", headers=as_dana(email_verified=False)
        )
        assert unverified.status_code == 404
        verified = await client.get(
            f"/api/v1/meetings/{meeting_id}", headers=as_dana(email_verified=True)
        )
        assert verified.status_code == 200
