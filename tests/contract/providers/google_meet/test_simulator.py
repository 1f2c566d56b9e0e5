"""Google Meet end to end against the Calendar + Meet simulator (every call spec-validated).

What Prism cannot show: that verification catches a space whose access type the server
dropped, that retried inserts under faults leave exactly one event and one space each,
that the service account acts as the host with one cached token per user (refreshed once
on 401), and that reschedule, cancel, end and participants do what they say.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner.meetings.enforcement import confirmed_enforcement, restrictive_controls
from provisioner.meetings.errors import VerificationFailed
from provisioner.policy.document import load_policy
from provisioner.policy.model import Chat, Control, MeetingSettings
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import Feature, MeetingProvider, MeetingSpec, Person
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderRetriable,
)
from provisioner.providers.google_meet import GoogleMeetConfig, GoogleMeetProvider
from provisioner.providers.google_meet.client import (
    GoogleClient,
    google_error,
    token_from_response,
)
from provisioner.providers.google_meet.mapping import derived_id
from provisioner.providers.http import RetryPolicy
from provisioner.providers.registry import build_providers
from tests.simulators import google
from tests.simulators.validation import FaultKind

REPO_ROOT = Path(__file__).resolve().parents[4]
BASE = "http://127.0.0.1:9"  # never dialled: the transport is the simulator in-process
TOKEN_URI = f"{BASE}/token"
HOST = "host@example.com"
ALL_FAULTS = (
    FaultKind.ERROR_AFTER_COMMIT,
    FaultKind.HANG_AFTER_COMMIT,
    FaultKind.THROTTLE,
    FaultKind.UNAVAILABLE,
)
EXPECTED = frozenset(
    {Control.WAITING_ROOM, Control.SIGN_IN_REQUIRED, Control.PRESENTERS, Control.CHAT}
)


def shipped_settings() -> MeetingSettings:
    return effective_for_groups(load_policy(REPO_ROOT / "config" / "policy.yaml"), []).settings


def make_spec(meeting_id: str = "meeting-1", **overrides: Any) -> MeetingSpec:
    fields: dict[str, Any] = {
        "meeting_id": meeting_id,
        "topic": "Quarterly planning",
        "start": datetime(2030, 3, 4, 15, 0, tzinfo=UTC),
        "duration": timedelta(hours=1),
        "timezone": "Europe/Berlin",
        "host": Person(HOST, "Hilde Host"),
        "invitees": (Person("ivan@example.com", "Ivan"),),
        "settings": shipped_settings(),
    }
    return MeetingSpec(**(fields | overrides))


def make_config(**overrides: Any) -> GoogleMeetConfig:
    key, _ = google.service_account_key(TOKEN_URI)
    return GoogleMeetConfig.model_validate(
        {
            "service_account_key": key,
            "calendar_base_url": f"{BASE}/calendar/v3",
            "meet_base_url": BASE,
            "timeout_seconds": 0.2,
            "conference_wait_seconds": 2,
        }
        | overrides
    )


async def _no_sleep(seconds: float) -> None:
    return None


def make_provider(sim: google.GoogleSimulator, **overrides: Any) -> GoogleMeetProvider:
    config = make_config(**overrides)
    client = GoogleClient(
        config,
        transport=sim.transport(),
        rand=lambda: 0.0,
        sleep=_no_sleep,
        retry=RetryPolicy(max_attempts=4),
    )
    return GoogleMeetProvider(config, client=client)


@pytest.fixture
async def sim() -> AsyncIterator[google.GoogleSimulator]:
    simulator = google.GoogleSimulator(token_uri=TOKEN_URI)
    yield simulator
    assert simulator.violations == []  # no call, ours or the simulator's, broke the spec


@pytest.fixture
async def meet(sim: google.GoogleSimulator) -> AsyncIterator[GoogleMeetProvider]:
    provider = make_provider(sim)
    yield provider
    await provider.aclose()


class TestContract:
    def test_is_a_meeting_provider_with_honest_declarations(self, meet: GoogleMeetProvider) -> None:
        assert isinstance(meet, MeetingProvider)
        assert meet.capabilities == EXPECTED  # no passcode: Meet has none
        assert meet.features == {
            Feature.RESCHEDULE,
            Feature.END_FOR_ALL,
            Feature.PARTICIPANTS,
            Feature.LOCK,
        }

    async def test_registry_builds_it_from_its_settings_table(self) -> None:
        key, _ = google.service_account_key(TOKEN_URI)
        providers = build_providers({"google_meet": {"service_account_key": key}})
        assert isinstance(providers["google_meet"], GoogleMeetProvider)
        await providers["google_meet"].aclose()

    @pytest.mark.parametrize(
        "overrides",
        [
            {"service_account_key": '{"type": "authorized_user"}'},
            {"service_account_key": "not json"},
            {"service_account_file": "/nonexistent/key.json"},
            {"meet_base_url": "http://meet.example.com"},
        ],
    )
    def test_bad_settings_are_refused_without_quoting_the_key(
        self, overrides: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError) as caught:
            make_config(**overrides)
        assert "PRIVATE KEY" not in str(caught.value)


class TestCreateAndVerify:
    async def test_shipped_policy_is_applied_and_confirmed(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        spec = make_spec()
        created = await meet.create(spec, idempotency_key="key-1")
        event_id = derived_id(spec.meeting_id, "event")
        event = sim.events[HOST, event_id]  # on the host's own calendar
        assert "attendees" not in event and event["visibility"] == "private"
        assert sim.calls[1] == ("POST", "/calendar/v3/calendars/primary/events")
        space = sim.space_of(HOST, event_id)
        assert space is not None
        assert space["config"] == {
            "accessType": "RESTRICTED",
            "entryPointAccess": "ALL",
            "moderation": "ON",
            "moderationRestrictions": {
                "chatRestriction": "HOSTS_ONLY",
                "presentRestriction": "HOSTS_ONLY",
            },
        }
        assert created.host.url == space["meetingUri"] and created.host.passcode is None
        assert created.shared == created.host and created.enforced == EXPECTED
        assert created.reference == {"user": HOST, "calendar_id": "primary", "event_id": event_id}
        observed = await meet.verify(spec, created)
        assert observed.confirmed == EXPECTED and observed.mismatched == {}

    @pytest.mark.parametrize(
        ("default", "mismatched"),
        [
            ("TRUSTED", {Control.WAITING_ROOM}),
            ("OPEN", {Control.WAITING_ROOM, Control.SIGN_IN_REQUIRED}),
        ],
    )
    async def test_a_dropped_access_type_is_caught(
        self,
        sim: google.GoogleSimulator,
        meet: GoogleMeetProvider,
        default: str,
        mismatched: set[Control],
    ) -> None:
        sim.drop_access_type = True
        sim.default_access_type = default
        spec = make_spec()
        created = await meet.create(spec, idempotency_key="key-1")
        observed = await meet.verify(spec, created)
        assert set(observed.mismatched) == mismatched
        assert created.host.url not in str(observed.mismatched)
        with pytest.raises(VerificationFailed):
            confirmed_enforcement(
                restrictive_controls(spec.settings), created, observed, meeting_id="m"
            )

    @pytest.mark.parametrize(("dial_in", "access"), [(False, "TRUSTED"), (True, "RESTRICTED")])
    async def test_sign_in_only_keeps_phone_callers_knocking(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider, dial_in: bool, access: str
    ) -> None:
        sim.phone_access = dial_in
        settings = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True
        )
        spec = make_spec(settings=settings)
        created = await meet.create(spec, idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None and space["config"]["accessType"] == access
        assert (await meet.verify(spec, created)).mismatched == {}

    async def test_trusted_with_dial_in_is_not_sign_in(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        settings = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True
        )
        spec = make_spec(settings=settings)
        created = await meet.create(spec, idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None
        space["phoneAccess"] = [{"phoneNumber": "+15555550100", "pin": "1"}]
        observed = await meet.verify(spec, created)
        assert set(observed.mismatched) == {Control.SIGN_IN_REQUIRED}

    async def test_guests_on_the_event_defeat_the_waiting_room(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        spec = make_spec()
        created = await meet.create(spec, idempotency_key="key-1")
        sim.events[HOST, created.provider_meeting_id]["attendees"] = [{"email": "x@example.com"}]
        observed = await meet.verify(spec, created)
        assert set(observed.mismatched) == {Control.WAITING_ROOM}

    async def test_a_config_that_cannot_be_applied_leaves_no_event(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        sim.refuse_config = True
        with pytest.raises(ProviderAuthFailed):
            await meet.create(make_spec(), idempotency_key="key-1")
        assert [e["status"] for e in sim.events.values()] == ["cancelled"]

    async def test_chat_off_is_applied_but_not_claimed(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        spec = make_spec(settings=dataclasses.replace(shipped_settings(), chat=Chat.OFF))
        created = await meet.create(spec, idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None
        assert space["config"]["moderationRestrictions"]["chatRestriction"] == "HOSTS_ONLY"
        assert Control.CHAT not in created.enforced

    async def test_a_pending_conference_is_waited_for(self, sim: google.GoogleSimulator) -> None:
        sim.pending_polls = 2
        provider = make_provider(sim)
        created = await provider.create(make_spec(), idempotency_key="key-1")
        await provider.aclose()
        gets = [c for c in sim.calls if c[0] == "GET" and "/events/" in c[1]]
        assert len(gets) == 2 and created.host.url.startswith("https://meet.google.com/")

    async def test_a_conference_that_never_comes_leaves_no_event(
        self, sim: google.GoogleSimulator
    ) -> None:
        sim.pending_polls = 1000
        provider = make_provider(sim, conference_wait_seconds=1)
        with pytest.raises(ProviderRejected) as caught:
            await provider.create(make_spec(), idempotency_key="key-1")
        await provider.aclose()
        assert caught.value.field == "conferenceData"
        assert [e["status"] for e in sim.events.values()] == ["cancelled"]


class TestRetriedCreates:
    async def test_twenty_creates_under_faults_leave_one_event_and_space_each(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        created = {}
        for number in range(20):
            sim.create_faults.push(ALL_FAULTS[number % 4])
            spec = make_spec(meeting_id=f"meeting-{number}")
            created[spec.meeting_id] = await meet.create(spec, idempotency_key=f"k-{number}")
        assert sim.create_faults.served == [ALL_FAULTS[n % 4] for n in range(20)]
        assert len(sim.events) == 20 and len(sim.spaces) == 20
        for meeting_id, meeting in created.items():
            assert meeting.provider_meeting_id == derived_id(meeting_id, "event")
            space = sim.space_of(HOST, meeting.provider_meeting_id)
            assert space is not None and space["meetingUri"] == meeting.host.url
        inserts = [c for c in sim.calls if c == ("POST", "/calendar/v3/calendars/primary/events")]
        assert len(inserts) == 40  # each request: the faulted attempt and one retry


class TestLifecycle:
    async def test_reschedule_keeps_the_event_and_its_link(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        spec = make_spec()
        created = await meet.create(spec, idempotency_key="key-1")
        moved = make_spec(start=spec.start + timedelta(days=1), topic="Moved planning")
        updated = await meet.update(moved, created.ref)
        assert updated.provider_meeting_id == created.provider_meeting_id
        assert updated.host == created.host
        event = sim.events[HOST, created.provider_meeting_id]
        assert event["start"] == {"dateTime": "2030-03-05T15:00:00Z", "timeZone": "Europe/Berlin"}
        assert (event["summary"], event["sequence"]) == ("Moved planning", 1)
        assert len(sim.spaces) == 1

    async def test_cancel_deletes_the_event_and_locks_the_space(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        settings = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True
        )
        spec = make_spec(settings=settings)
        created = await meet.create(spec, idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None and space["config"]["accessType"] == "TRUSTED"
        await meet.delete(created.ref)
        assert sim.events[HOST, created.provider_meeting_id]["status"] == "cancelled"
        assert space["config"]["accessType"] == "RESTRICTED"
        await meet.delete(created.ref)  # already cancelled: fine
        with pytest.raises(ProviderNotFound):
            await meet.verify(spec, created)

    async def test_end_for_all_ends_a_running_conference_only(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        created = await meet.create(make_spec(), idempotency_key="key-1")
        await meet.end(created.ref)  # nothing running: nothing to do
        assert sim.ended == []
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None
        sim.start_conference(space["name"], [])
        await meet.end(created.ref)
        assert sim.ended == [space["name"]] and "activeConference" not in space

    async def test_participants_come_from_conference_records(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        created = await meet.create(make_spec(), idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None
        sim.start_conference(
            space["name"],
            [
                {
                    "signedinUser": {"user": "users/123", "displayName": "Ivan"},
                    "earliestStartTime": "2030-03-04T15:01:00Z",
                },
                {"anonymousUser": {"displayName": "Visitor"}},
            ],
        )
        people = await meet.list_participants(created.ref)
        assert [(p.name, p.email) for p in people] == [("Ivan", None), ("Visitor", None)]
        assert people[0].joined_at == datetime(2030, 3, 4, 15, 1, tzinfo=UTC)


class TestTokens:
    async def test_one_token_per_user_cached_and_refreshed_once_on_401(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        spec = make_spec()
        created = await meet.create(spec, idempotency_key="key-1")
        await meet.verify(spec, created)
        assert sim.token_subjects == [HOST]
        other = make_spec(meeting_id="m-2", host=Person("other@example.com", "Otto"))
        await meet.create(other, idempotency_key="key-2")
        assert sim.token_subjects == [HOST, "other@example.com"]
        assert sim.events.keys() >= {("other@example.com", derived_id("m-2", "event"))}
        sim.revoke_tokens()
        assert (await meet.verify(spec, created)).mismatched == {}
        assert sim.token_subjects == [HOST, "other@example.com", HOST]

    async def test_a_user_outside_the_domain_is_an_auth_failure(
        self, meet: GoogleMeetProvider
    ) -> None:
        stranger = make_spec(host=Person("someone@elsewhere.example", "S"))
        with pytest.raises(ProviderAuthFailed):
            await meet.create(stranger, idempotency_key="key-1")

    @pytest.mark.parametrize(
        ("response", "kind"),
        [
            (httpx.Response(503), ProviderRetriable),
            (httpx.Response(401, json={"error": "unauthorized_client"}), ProviderAuthFailed),
            (httpx.Response(200, json={"access_token": "t"}), ProviderError),
            (httpx.Response(200, json={"access_token": "t", "expires_in": "x"}), ProviderError),
        ],
    )
    def test_token_answers_map_to_typed_errors(
        self, response: httpx.Response, kind: type[ProviderError]
    ) -> None:
        with pytest.raises(kind):
            token_from_response(response, clock=lambda: 0.0)


def _google(status: int, reason: str, **error: Any) -> httpx.Response:
    body = {"code": status, "message": "m", "errors": [{"reason": reason, **error}]}
    return httpx.Response(status, json={"error": body})


class TestErrorMapping:
    def test_a_named_parameter_becomes_the_field(self) -> None:
        error = google_error(_google(400, "invalid", location="updateMask"))
        assert isinstance(error, ProviderRejected) and error.field == "updateMask"

    def test_a_403_rate_limit_is_retried_like_a_429(self) -> None:
        assert isinstance(google_error(_google(403, "rateLimitExceeded")), ProviderRetriable)

    @pytest.mark.parametrize(
        ("status", "reason", "kind"),
        [
            (401, "authError", ProviderAuthFailed),
            (403, "insufficientPermissions", ProviderAuthFailed),
            (404, "notFound", ProviderNotFound),
            (410, "deleted", ProviderNotFound),
        ],
    )
    def test_statuses(self, status: int, reason: str, kind: type[Exception]) -> None:
        assert isinstance(google_error(_google(status, reason)), kind)

    def test_urls_are_scrubbed_from_messages(self) -> None:
        response = httpx.Response(
            400,
            json={"error": {"code": 400, "message": "bad https://meet.google.com/abc-defg-hij"}},
        )
        assert "meet.google.com" not in str(google_error(response))

    async def test_the_simulator_refuses_what_the_spec_refuses(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        created = await meet.create(make_spec(), idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None
        with pytest.raises(ProviderError):  # the simulator answers 500 with the violation
            await meet.client.patch_space(
                HOST,
                space["name"].split("/")[1],
                {"config": {"accessType": "restricted"}},
                "config.accessType",
            )
        assert any("accessType" in v for v in sim.violations)
        sim.violations.clear()


class TestLock:
    async def test_lock_makes_the_space_restricted(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        settings = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True
        )
        created = await meet.create(make_spec(settings=settings), idempotency_key="key-1")
        space = sim.space_of(HOST, created.provider_meeting_id)
        assert space is not None and space["config"]["accessType"] == "TRUSTED"

        await meet.lock(created.ref)

        assert space["config"]["accessType"] == "RESTRICTED"

    async def test_a_space_that_stays_open_makes_lock_fail_loudly(
        self, sim: google.GoogleSimulator, meet: GoogleMeetProvider
    ) -> None:
        settings = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True
        )
        created = await meet.create(make_spec(settings=settings), idempotency_key="key-1")
        sim.drop_access_type = True

        with pytest.raises(ProviderRejected):
            await meet.lock(created.ref)
