"""GET /api/v1/meetings/{id}/attendance: the provider's participants against the invite list."""

from __future__ import annotations

import httpx

from provisioner.providers.base import MeetingRef, Participant
from provisioner.providers.errors import ProviderRetriable
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import created_meeting

IN_THE_CALL = [
    Participant(name="Dana Host", email="dana@example.com", provider_participant_id="p-1"),
    Participant(name="Ana Lima", email="ana@example.com", provider_participant_id="p-2"),
    Participant(name="Ben Okafor", email=None, provider_participant_id="p-3"),
    Participant(name="Mallory", email=None, provider_participant_id="p-4"),
]


class TestAttendance:
    async def test_matches_flags_and_lists_who_is_missing(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], fake: FakeProvider
    ) -> None:
        fake.participants = list(IN_THE_CALL)
        meeting = await created_meeting(client, host_headers, provider="fake")
        response = await client.get(
            f"/api/v1/meetings/{meeting['id']}/attendance", headers=host_headers
        )
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        report = response.json()
        assert report["meeting_id"] == meeting["id"]
        assert [
            (p["participant_id"], p["status"], p["matched_by"]) for p in report["participants"]
        ] == [
            ("p-1", "matched", "email"),
            ("p-2", "matched", "email"),
            ("p-3", "weak", "name"),
            ("p-4", "unknown", None),
        ]
        presence = {p["email"]: (p["present"], p["role"]) for p in report["invited"]}
        assert presence == {
            "dana@example.com": (True, "host"),
            "ana@example.com": (True, "invitee"),
            "ben@example.com": (True, "invitee"),
            "chen@partner.example.org": (False, "invitee"),
        }

    async def test_responders_may_look_strangers_may_not(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        responder_headers: dict[str, str],
        stranger_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        url = f"/api/v1/meetings/{meeting['id']}/attendance"
        assert (await client.get(url, headers=stranger_headers)).status_code == 404
        assert (await client.get(url, headers=responder_headers)).status_code == 200

    async def test_jitsi_has_no_participant_api_and_says_so(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        meeting = await created_meeting(client, host_headers)
        response = await client.get(
            f"/api/v1/meetings/{meeting['id']}/attendance", headers=host_headers
        )
        assert response.status_code == 422
        problem = response.json()
        assert problem["type"].endswith("/provider-feature-unsupported")
        assert "participant list in the meeting window" in problem["detail"]

    async def test_a_provider_outage_is_503_not_500(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        state.providers = {"fake": Unreachable()}
        meeting = await created_meeting(client, host_headers, provider="fake")
        response = await client.get(
            f"/api/v1/meetings/{meeting['id']}/attendance", headers=host_headers
        )
        assert response.status_code == 503


class Unreachable(FakeProvider):
    async def list_participants(self, meeting: MeetingRef) -> list[Participant]:
        raise ProviderRetriable("timed out", provider=self.name)
