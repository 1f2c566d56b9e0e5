"""Teams requests against Prism serving the Graph v1.0 subset (static mode).

Prism validates each request (the subset refuses unknown scalar properties and enum values
in the wrong case) and reports problems in `sl-violations`; every exchange must have none.
Because Prism's canned answers say nothing about what we sent, the exact bodies are
asserted as well.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner.policy.document import load_policy
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import MeetingRef, MeetingSpec, Person
from provisioner.providers.errors import ProviderRejected
from provisioner.providers.teams import TeamsConfig, TeamsProvider
from provisioner.providers.teams.client import GraphClient
from provisioner.providers.teams.mapping import transaction_id
from tests.support.prism import SPECS, PrismServer, prism, violations

REPO_ROOT = Path(__file__).resolve().parents[4]
GRAPH_SPEC = SPECS / "msgraph" / "graph-v1.0-meetings-subset.json"
HOST = "host@example.com"


class FixedToken(httpx.Auth):
    """Prism only checks that a bearer token is present; the token grant is not in the
    subset (it is tested against the simulator)."""

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = "Bearer prism-test-token"
        yield request


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    """Forwards to Prism over loopback and keeps every (request, response) pair."""

    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    exchanges: list[tuple[httpx.Request, httpx.Response]] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.exchanges.append((request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def calls(self) -> list[tuple[str, str, Any]]:
        return [
            (r.method, r.url.path, json.loads(r.content) if r.content else None)
            for r, _ in self.exchanges
        ]

    def assert_no_violations(self) -> None:
        for request, response in self.exchanges:
            assert violations(response) == [], f"{request.method} {request.url.path}"
            assert response.status_code < 400, f"{request.method} {request.url.path}"


@pytest.fixture(scope="module")
def server() -> Iterator[PrismServer]:
    with prism(GRAPH_SPEC) as running:
        yield running


def make_spec() -> MeetingSpec:
    settings = effective_for_groups(load_policy(REPO_ROOT / "config" / "policy.yaml"), [])
    return MeetingSpec(
        meeting_id="0b7c6a36-3f0e-4d59-9a57-4a3c1b6e2f10",
        topic="Quarterly planning",
        start=datetime(2030, 3, 4, 15, 0, tzinfo=UTC),
        duration=timedelta(hours=1),
        timezone="Europe/Berlin",
        host=Person(HOST, "Hilde Host"),
        invitees=(Person("ivan@example.com", "Ivan"),),
        settings=settings.settings,
    )


@dataclass
class Wired:
    provider: TeamsProvider
    recorder: Recorder


async def _wired(server: PrismServer, **overrides: Any) -> Wired:
    config = TeamsConfig.model_validate(
        {
            "tenant_id": "contoso.onmicrosoft.com",
            "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": "unused-with-prism",
            "graph_base_url": server.base_url,
        }
        | overrides
    )
    recorder = Recorder()
    client = GraphClient(config, auth=FixedToken(), transport=recorder)
    return Wired(TeamsProvider(config, client=client), recorder)


@pytest.fixture
async def wired(server: PrismServer) -> AsyncIterator[Wired]:
    pair = await _wired(server)
    yield pair
    await pair.provider.aclose()


# What the shipped policy (config/policy.yaml, no groups) must turn into, byte for byte.
SHIPPED_OPTIONS = {
    "lobbyBypassSettings": {"scope": "organizer", "isDialInBypassEnabled": False},
    "allowedPresenters": "organizer",
    "allowMeetingChat": "disabled",
    "allowAttendeeToEnableMic": False,
    "joinMeetingIdSettings": {"isPasscodeRequired": True},
}


class TestCreate:
    async def test_shipped_policy_create_passes_prism_with_the_exact_bodies(
        self, wired: Wired
    ) -> None:
        spec = make_spec()
        created = await wired.provider.create(spec, idempotency_key="key-1")
        wired.recorder.assert_no_violations()
        assert wired.recorder.calls() == [
            (
                "POST",
                f"/users/{HOST}/onlineMeetings/createOrGet",
                {
                    "externalId": spec.meeting_id,
                    "subject": "Quarterly planning",
                    "startDateTime": "2030-03-04T15:00:00Z",
                    "endDateTime": "2030-03-04T16:00:00Z",
                },
            ),
            ("PATCH", f"/users/{HOST}/onlineMeetings/string", SHIPPED_OPTIONS),
        ]
        request = wired.recorder.exchanges[0][0]
        assert request.headers["authorization"] == "Bearer prism-test-token"
        assert created.provider_meeting_id == "string"  # Prism's canned id

    async def test_calendar_event_mode_passes_prism(self, server: PrismServer) -> None:
        pair = await _wired(server, use_calendar_event=True)
        spec = make_spec()
        await pair.provider.create(spec, idempotency_key="key-1")
        await pair.provider.aclose()
        pair.recorder.assert_no_violations()
        calls = pair.recorder.calls()
        assert calls[0] == (
            "POST",
            f"/users/{HOST}/events",
            {
                "subject": "Quarterly planning",
                "start": {"dateTime": "2030-03-04T15:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2030-03-04T16:00:00", "timeZone": "UTC"},
                "isOnlineMeeting": True,
                "onlineMeetingProvider": "teamsForBusiness",
                "transactionId": transaction_id(spec.meeting_id),
                "allowNewTimeProposals": False,
                "responseRequested": False,
                "sensitivity": "private",
            },
        )
        assert calls[1][:2] == ("GET", f"/users/{HOST}/onlineMeetings")
        query = pair.recorder.exchanges[1][0].url.params["$filter"]
        assert query == "JoinWebUrl eq 'string'"  # Prism's canned joinUrl
        assert calls[2] == ("PATCH", f"/users/{HOST}/onlineMeetings/string", SHIPPED_OPTIONS)


class TestLifecycle:
    async def test_verify_reschedule_cancel_and_participants_pass_prism(self, wired: Wired) -> None:
        spec = make_spec()
        created = await wired.provider.create(spec, idempotency_key="key-1")
        await wired.provider.verify(spec, created)
        wired.recorder.assert_no_violations()
        assert wired.recorder.calls()[2] == ("GET", f"/users/{HOST}/onlineMeetings/string", None)
        wired.recorder.exchanges.clear()
        ref = MeetingRef("string", {"organizer": HOST})
        moved = MeetingSpec(**{**spec.__dict__, "start": spec.start + timedelta(days=1)})
        await wired.provider.update(moved, ref)
        await wired.provider.list_participants(ref)
        await wired.provider.delete(ref)
        wired.recorder.assert_no_violations()
        calls = wired.recorder.calls()
        assert calls[0] == (
            "PATCH",
            f"/users/{HOST}/onlineMeetings/string",
            SHIPPED_OPTIONS
            | {
                "subject": "Quarterly planning",
                "startDateTime": "2030-03-05T15:00:00Z",
                "endDateTime": "2030-03-05T16:00:00Z",
            },
        )
        assert calls[1][:2] == ("GET", f"/users/{HOST}/onlineMeetings/string/attendanceReports")
        assert calls[2] == ("DELETE", f"/users/{HOST}/onlineMeetings/string", None)

    async def test_calendar_mode_reschedule_and_cancel_pass_prism(
        self, server: PrismServer
    ) -> None:
        pair = await _wired(server, use_calendar_event=True)
        spec = make_spec()
        ref = MeetingRef("string", {"organizer": HOST, "event_id": "AAMkevent"})
        await pair.provider.update(spec, ref)
        await pair.provider.delete(ref)
        await pair.provider.aclose()
        pair.recorder.assert_no_violations()
        assert [c[:2] for c in pair.recorder.calls()] == [
            ("PATCH", f"/users/{HOST}/events/AAMkevent"),
            ("PATCH", f"/users/{HOST}/onlineMeetings/string"),
            ("DELETE", f"/users/{HOST}/events/AAMkevent"),
        ]

    async def test_prism_flags_what_the_subset_refuses(self, wired: Wired) -> None:
        """The harness is live: a wrong-case enum is a violation (the subset is strict)."""
        with pytest.raises(ProviderRejected):
            await wired.provider.client.update_meeting(
                HOST, "string", {"allowMeetingChat": "Disabled"}
            )
        (_, response) = wired.recorder.exchanges[-1]
        assert violations(response)
