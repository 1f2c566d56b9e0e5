"""Expel, lock and end: who may use them, what they do at the provider, what is audited,
and the plain answer where the provider has no API."""

from __future__ import annotations

import httpx

from provisioner.providers.base import MeetingRef, Participant
from provisioner.providers.errors import ProviderNotFound
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.meetings.responders import zoom_like
from tests.support.meeting_fixtures import actions_of, audit_of, created_meeting

INTRUDER = Participant(name="Mallory", email=None, provider_participant_id="p-66")


def expel_url(meeting_id: object, participant_id: str = "p-66") -> str:
    return f"/api/v1/meetings/{meeting_id}/participants/{participant_id}/expel"


class TestExpel:
    async def test_host_expels_and_it_is_audited(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        fake.participants = [INTRUDER]
        meeting = await created_meeting(client, host_headers, provider="fake")
        response = await client.post(expel_url(meeting["id"]), headers=host_headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "meeting_id": meeting["id"],
            "action": "expelled",
            "provider": "fake",
            "participant_id": "p-66",
        }
        assert fake.expelled == ["p-66"] and fake.participants == []
        events = await audit_of(state, str(meeting["id"]))
        [(actor, details)] = [(a, d) for n, a, d in events if n == "meeting.participant_expelled"]
        assert actor == "dana"
        assert details == {"participant_id": "p-66", "as": "host", "provider": "fake"}

    async def test_responder_expels_from_someone_elses_meeting_a_stranger_cannot(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        responder_headers: dict[str, str],
        stranger_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        denied = await client.post(expel_url(meeting["id"]), headers=stranger_headers)
        assert denied.status_code == 404
        assert fake.expelled == []
        allowed = await client.post(expel_url(meeting["id"]), headers=responder_headers)
        assert allowed.status_code == 200
        events = await audit_of(state, str(meeting["id"]))
        assert [(a, d["as"]) for n, a, d in events if n == "meeting.participant_expelled"] == [
            ("rosa", "responder")
        ]

    async def test_zoom_has_no_api_and_the_host_is_told_what_to_do(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        zoom = zoom_like(state)
        meeting = await created_meeting(client, host_headers, provider="zoom")
        response = await client.post(expel_url(meeting["id"]), headers=host_headers)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/provider-feature-unsupported")
        assert "zoom has no API to remove a participant" in problem["detail"]
        assert "More > Remove" in problem["detail"]
        assert zoom.expelled == []

    async def test_a_participant_the_provider_does_not_know_is_404(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        state.providers = {"fake": GoneParticipant()}
        meeting = await created_meeting(client, host_headers, provider="fake")
        response = await client.post(expel_url(meeting["id"], "p-1"), headers=host_headers)
        assert response.status_code == 404
        assert response.json()["type"].endswith("/participant-not-found")

    async def test_a_malformed_participant_id_is_422_naming_it(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], fake: FakeProvider
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        response = await client.post(expel_url(meeting["id"], "a%20b"), headers=host_headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "participant_id"
        assert fake.expelled == []


class TestLock:
    async def test_host_locks_and_it_is_audited(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        response = await client.post(f"/api/v1/meetings/{meeting['id']}/lock", headers=host_headers)
        assert response.status_code == 200
        assert response.json()["action"] == "locked"
        assert fake.locked == fake.created
        assert "meeting.locked" in await actions_of(state, str(meeting["id"]))

    async def test_unsupported_lock_tells_the_host_where_the_button_is(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        zoom_like(state)
        meeting = await created_meeting(client, host_headers, provider="zoom")
        response = await client.post(f"/api/v1/meetings/{meeting['id']}/lock", headers=host_headers)
        assert response.status_code == 422
        assert "Security > Lock Meeting" in response.json()["detail"]

    async def test_an_ended_meeting_cannot_be_locked(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], fake: FakeProvider
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        await client.post(f"/api/v1/meetings/{meeting['id']}/end", headers=host_headers)
        response = await client.post(f"/api/v1/meetings/{meeting['id']}/lock", headers=host_headers)
        assert response.status_code == 409
        assert fake.locked == []


class TestEndByResponder:
    async def test_responder_ends_any_meeting_without_seeing_the_host_link(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        responder_headers: dict[str, str],
        stranger_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        url = f"/api/v1/meetings/{meeting['id']}/end"
        assert (await client.post(url, headers=stranger_headers)).status_code == 404
        response = await client.post(url, headers=responder_headers)
        assert response.status_code == 200
        assert response.json()["state"] == "ended"
        assert response.json()["host_join"] is None
        assert fake.ended == fake.created
        events = await audit_of(state, str(meeting["id"]))
        assert [(a, d["as"]) for n, a, d in events if n == "meeting.ended"] == [
            ("rosa", "responder")
        ]


class TestOpenApi:
    async def test_control_routes_document_their_problems(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        for path, method in (
            ("/api/v1/meetings/{meeting_id}/rotate", "post"),
            ("/api/v1/meetings/{meeting_id}/lock", "post"),
            ("/api/v1/meetings/{meeting_id}/participants/{participant_id}/expel", "post"),
            ("/api/v1/meetings/{meeting_id}/attendance", "get"),
        ):
            answers = paths[path][method]["responses"]
            assert {"404", "422"} <= set(answers), path
            assert "application/problem+json" in answers["422"]["content"]


class GoneParticipant(FakeProvider):
    async def expel(self, meeting: MeetingRef, participant_id: str) -> None:
        raise ProviderNotFound("no such participant", provider=self.name)
