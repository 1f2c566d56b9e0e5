"""Google Meet requests against Prism serving the derived Calendar and Meet OpenAPI files.

Two Prism servers, one per spec, as Calendar and Meet are two hosts. Each request must
come back without `sl-violations`, and since Prism lets unknown properties through (and
its canned answers echo nothing), the exact bodies and query parameters are asserted.

Prism's canned Event has no usable conference (its solution type is "string"), so the
provider's multi-step create cannot run end to end here; each of its calls is sent
through the client with the body the provider builds (`event_insert_body`,
`space_config`), which is exactly what `create` sends (the simulator tests run it whole).
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
from provisioner.providers.base import MeetingSpec, Person
from provisioner.providers.errors import ProviderRejected
from provisioner.providers.google_meet import GoogleMeetConfig
from provisioner.providers.google_meet.client import GoogleClient
from provisioner.providers.google_meet.mapping import (
    SPACE_MASK,
    derived_id,
    event_insert_body,
    event_times,
    space_config,
)
from tests.simulators.google import service_account_key
from tests.support.prism import SPECS, PrismServer, prism, violations

REPO_ROOT = Path(__file__).resolve().parents[4]
HOST = "host@example.com"


class FixedToken(httpx.Auth):
    """Prism only checks that a bearer token is present; the JWT bearer grant is tested
    against the simulator."""

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

    def calls(self) -> list[tuple[str, str, dict[str, str], Any]]:
        return [
            (
                r.method,
                r.url.path,
                dict(r.url.params),
                json.loads(r.content) if r.content else None,
            )
            for r, _ in self.exchanges
        ]

    def assert_no_violations(self) -> None:
        """No `sl-violations`, and no 4xx (a refused request's problems can be in the body)."""
        for request, response in self.exchanges:
            assert violations(response) == [], f"{request.method} {request.url.path}"
            assert response.status_code < 400, f"{request.method} {request.url.path}"


@pytest.fixture(scope="module")
def calendar() -> Iterator[PrismServer]:
    with prism(SPECS / "google" / "calendar.v3.openapi.json") as running:
        yield running


@pytest.fixture(scope="module")
def meet() -> Iterator[PrismServer]:
    with prism(SPECS / "google" / "meet.v2.openapi.json") as running:
        yield running


@dataclass
class Wired:
    client: GoogleClient
    recorder: Recorder


@pytest.fixture
async def wired(calendar: PrismServer, meet: PrismServer) -> AsyncIterator[Wired]:
    key, _ = service_account_key("https://oauth2.googleapis.com/token")
    config = GoogleMeetConfig(
        service_account_key=key,
        calendar_base_url=calendar.base_url,
        meet_base_url=meet.base_url,
    )
    recorder = Recorder()
    client = GoogleClient(config, auth=FixedToken(), transport=recorder)
    yield Wired(client, recorder)
    await client.aclose()


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


class TestCreate:
    async def test_shipped_policy_create_calls_pass_prism_with_the_exact_bodies(
        self, wired: Wired
    ) -> None:
        spec = make_spec()
        await wired.client.insert_event(HOST, "primary", event_insert_body(spec))
        await wired.client.get_space(HOST, "abc-mnop-xyz")
        await wired.client.patch_space(
            HOST, "jQCFfuBOdN5z", {"config": space_config(spec.settings, dial_in=False)}, SPACE_MASK
        )
        wired.recorder.assert_no_violations()
        insert, get, patch = wired.recorder.calls()
        assert insert == (
            "POST",
            "/calendars/primary/events",
            {"conferenceDataVersion": "1", "sendUpdates": "none"},
            {
                "summary": "Quarterly planning",
                "start": {"dateTime": "2030-03-04T15:00:00Z", "timeZone": "Europe/Berlin"},
                "end": {"dateTime": "2030-03-04T16:00:00Z", "timeZone": "Europe/Berlin"},
                "id": derived_id(spec.meeting_id, "event"),
                "conferenceData": {
                    "createRequest": {
                        "requestId": derived_id(spec.meeting_id, "conference"),
                        "conferenceSolutionKey": {"type": "hangoutsMeet"},
                    }
                },
                "visibility": "private",
                "guestsCanInviteOthers": False,
                "guestsCanSeeOtherGuests": False,
            },
        )
        assert get == ("GET", "/v2/spaces/abc-mnop-xyz", {}, None)
        assert patch == (
            "PATCH",
            "/v2/spaces/jQCFfuBOdN5z",
            {
                "updateMask": "config.accessType,config.moderation,"
                "config.moderationRestrictions.chatRestriction,"
                "config.moderationRestrictions.presentRestriction"
            },
            {
                "config": {
                    "accessType": "RESTRICTED",
                    "moderation": "ON",
                    "moderationRestrictions": {
                        "chatRestriction": "HOSTS_ONLY",
                        "presentRestriction": "HOSTS_ONLY",
                    },
                }
            },
        )
        assert all(
            r.headers["authorization"] == "Bearer prism-test-token"
            for r, _ in wired.recorder.exchanges
        )

    def test_event_ids_are_what_calendar_accepts(self) -> None:
        event_id = derived_id(make_spec().meeting_id, "event")
        assert 5 <= len(event_id) <= 1024
        assert set(event_id) <= set("abcdefghijklmnopqrstuv0123456789")


class TestLifecycle:
    async def test_verify_reschedule_cancel_end_and_participants_pass_prism(
        self, wired: Wired
    ) -> None:
        spec = make_spec()
        event_id = derived_id(spec.meeting_id, "event")
        await wired.client.get_event(HOST, "primary", event_id)
        await wired.client.patch_event(HOST, "primary", event_id, event_times(spec))
        await wired.client.patch_space(
            HOST, "jQCFfuBOdN5z", {"config": {"accessType": "RESTRICTED"}}, "config.accessType"
        )
        await wired.client.delete_event(HOST, "primary", event_id)
        await wired.client.end_active_conference(HOST, "jQCFfuBOdN5z")
        await wired.client.conference_records(HOST, "spaces/jQCFfuBOdN5z")
        await wired.client.participants(HOST, "abc123")
        wired.recorder.assert_no_violations()
        calls = wired.recorder.calls()
        assert calls[1] == (
            "PATCH",
            f"/calendars/primary/events/{event_id}",
            {"conferenceDataVersion": "1", "sendUpdates": "none"},
            event_times(spec),
        )
        assert calls[3] == (
            "DELETE",
            f"/calendars/primary/events/{event_id}",
            {"sendUpdates": "none"},
            None,
        )
        assert calls[4] == ("POST", "/v2/spaces/jQCFfuBOdN5z:endActiveConference", {}, {})
        # Prism's canned pages all carry nextPageToken "string": followed once, then the
        # repetition stops the paging.
        assert [c[:3] for c in calls[5:]] == [
            ("GET", "/v2/conferenceRecords", {"filter": 'space.name = "spaces/jQCFfuBOdN5z"'}),
            (
                "GET",
                "/v2/conferenceRecords",
                {"filter": 'space.name = "spaces/jQCFfuBOdN5z"', "pageToken": "string"},
            ),
            ("GET", "/v2/conferenceRecords/abc123/participants", {}),
            ("GET", "/v2/conferenceRecords/abc123/participants", {"pageToken": "string"}),
        ]

    async def test_prism_flags_a_wrong_enum(self, wired: Wired) -> None:
        """The harness is live: Meet enums are upper case, and Prism says so."""
        with pytest.raises(ProviderRejected):
            await wired.client.patch_space(
                HOST, "jQCFfuBOdN5z", {"config": {"accessType": "restricted"}}, "config"
            )
        (_, response) = wired.recorder.exchanges[-1]
        # With no error response in the spec, Prism answers its own 422 and lists the
        # problems in the body rather than in sl-violations.
        await response.aread()
        assert response.status_code == 422
        assert ["body", "config", "accessType"] in [
            v["location"] for v in response.json()["validation"]
        ]
