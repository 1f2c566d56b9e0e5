"""Teams end to end against the stateful Graph simulator (every call spec-validated).

What Prism cannot show: that verification catches a lobby the server dropped, that
retried creates under faults leave exactly one meeting each, that a reschedule keeps the
meeting and a cancel removes it, and that the app token is cached and refreshed once.
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
from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import Feature, MeetingProvider, MeetingSpec, Person
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderRetriable,
    ProviderUnsupported,
)
from provisioner.providers.http import RetryPolicy
from provisioner.providers.registry import build_providers
from provisioner.providers.teams import TeamsConfig, TeamsProvider
from provisioner.providers.teams.client import GraphClient, graph_error, token_from_response
from provisioner.providers.teams.mapping import transaction_id
from tests.simulators import graph
from tests.simulators.validation import FaultKind

REPO_ROOT = Path(__file__).resolve().parents[4]
BASE = "http://127.0.0.1:9"  # never dialled: the transport is the simulator in-process
HOST = "host@example.com"
ALL_FAULTS = (
    FaultKind.ERROR_AFTER_COMMIT,
    FaultKind.HANG_AFTER_COMMIT,
    FaultKind.THROTTLE,
    FaultKind.UNAVAILABLE,
)


def shipped_settings() -> MeetingSettings:
    document = load_policy(REPO_ROOT / "config" / "policy.yaml")
    return effective_for_groups(document, []).settings


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


def make_config(**overrides: Any) -> TeamsConfig:
    return TeamsConfig.model_validate(
        {
            "tenant_id": graph.TENANT,
            "client_id": graph.CLIENT_ID,
            "client_secret": graph.CLIENT_SECRET,
            "graph_base_url": f"{BASE}/v1.0",
            "login_base_url": BASE,
            "timeout_seconds": 0.2,
        }
        | overrides
    )


async def _no_sleep(seconds: float) -> None:
    return None


def make_provider(sim: graph.GraphSimulator, **overrides: Any) -> TeamsProvider:
    config = make_config(**overrides)
    client = GraphClient(
        config,
        transport=sim.transport(),
        rand=lambda: 0.0,
        sleep=_no_sleep,
        retry=RetryPolicy(max_attempts=4),
    )
    return TeamsProvider(config, client=client)


@pytest.fixture
async def sim() -> AsyncIterator[graph.GraphSimulator]:
    simulator = graph.GraphSimulator()
    yield simulator
    assert simulator.violations == []  # no call, ours or the simulator's, broke the spec


@pytest.fixture
async def teams(sim: graph.GraphSimulator) -> AsyncIterator[TeamsProvider]:
    provider = make_provider(sim)
    yield provider
    await provider.aclose()


@pytest.fixture
async def teams_calendar(sim: graph.GraphSimulator) -> AsyncIterator[TeamsProvider]:
    provider = make_provider(sim, use_calendar_event=True)
    yield provider
    await provider.aclose()


EXPECTED = frozenset(
    {
        Control.PASSCODE,
        Control.WAITING_ROOM,
        Control.JOIN_BEFORE_HOST,
        Control.SIGN_IN_REQUIRED,
        Control.PRESENTERS,
        Control.CHAT,
        Control.MUTE_ON_ENTRY,
    }
)


class TestContract:
    def test_is_a_meeting_provider_with_honest_declarations(self, teams: TeamsProvider) -> None:
        assert isinstance(teams, MeetingProvider)
        assert teams.capabilities == EXPECTED
        assert teams.features == {Feature.RESCHEDULE, Feature.PARTICIPANTS, Feature.LOCK}

    async def test_registry_builds_it_from_its_settings_table(self) -> None:
        providers = build_providers(
            {
                "teams": {
                    "tenant_id": graph.TENANT,
                    "client_id": graph.CLIENT_ID,
                    "client_secret": graph.CLIENT_SECRET,
                }
            }
        )
        assert isinstance(providers["teams"], TeamsProvider)
        await providers["teams"].aclose()

    @pytest.mark.parametrize(
        "overrides",
        [
            {"tenant_id": "common"},
            {"client_secret": " "},
            {"graph_base_url": "http://graph.example.com/v1.0"},
            {"surprise": 1},
        ],
    )
    def test_bad_settings_are_refused_without_echoing_the_secret(
        self, overrides: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError) as caught:
            make_config(**overrides)
        assert graph.CLIENT_SECRET not in str(caught.value)


class TestCreateAndVerify:
    async def test_shipped_policy_is_applied_and_confirmed(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        stored = sim.meetings[created.provider_meeting_id]
        assert stored["externalId"] == spec.meeting_id
        assert stored["lobbyBypassSettings"] == {
            "scope": "organizer",
            "isDialInBypassEnabled": False,
        }
        assert stored["joinMeetingIdSettings"]["isPasscodeRequired"] is True
        assert (
            stored["allowedPresenters"],
            stored["allowMeetingChat"],
            stored["allowAttendeeToEnableMic"],
        ) == ("organizer", "disabled", False)
        assert created.enforced == EXPECTED
        assert created.host.passcode == stored["joinMeetingIdSettings"]["passcode"]
        assert created.shared == created.host and created.personal == {}
        observed = await teams.verify(spec, created)
        assert observed.confirmed == EXPECTED and observed.mismatched == {}

    async def test_a_dropped_lobby_is_caught_and_the_meeting_not_accepted(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        sim.drop_lobby = True
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        observed = await teams.verify(spec, created)
        assert set(observed.mismatched) == {Control.WAITING_ROOM, Control.JOIN_BEFORE_HOST}
        assert "organization" in observed.mismatched[Control.WAITING_ROOM]
        assert created.host.url not in str(observed.mismatched)
        with pytest.raises(VerificationFailed):
            confirmed_enforcement(
                restrictive_controls(spec.settings), created, observed, meeting_id=spec.meeting_id
            )

    async def test_dial_in_bypass_counts_against_lobby_and_sign_in(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        sim.meetings[created.provider_meeting_id]["lobbyBypassSettings"][
            "isDialInBypassEnabled"
        ] = True
        observed = await teams.verify(spec, created)
        assert {Control.WAITING_ROOM, Control.SIGN_IN_REQUIRED} <= set(observed.mismatched)

    async def test_a_changed_passcode_is_caught(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        sim.meetings[created.provider_meeting_id]["joinMeetingIdSettings"]["passcode"] = "other"
        observed = await teams.verify(spec, created)
        assert set(observed.mismatched) == {Control.PASSCODE}

    async def test_options_that_cannot_be_applied_leave_no_meeting(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        sim.refuse_options = True
        with pytest.raises(ProviderAuthFailed):
            await teams.create(make_spec(), idempotency_key="key-1")
        assert sim.meetings == {}

    async def test_looser_unlocked_settings_claim_only_what_they_restrict(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        settings = dataclasses.replace(
            shipped_settings(),
            presenters=Presenters.EVERYONE,
            chat=Chat.EVERYONE,
            mute_on_entry=False,
        )
        spec = make_spec(settings=settings)
        created = await teams.create(spec, idempotency_key="key-1")
        stored = sim.meetings[created.provider_meeting_id]
        assert (
            stored["allowedPresenters"],
            stored["allowMeetingChat"],
            stored["allowAttendeeToEnableMic"],
        ) == ("everyone", "enabled", True)
        assert created.enforced == EXPECTED - {
            Control.PRESENTERS,
            Control.CHAT,
            Control.MUTE_ON_ENTRY,
        }
        assert (await teams.verify(spec, created)).mismatched == {}

    async def test_calendar_event_mode(
        self, sim: graph.GraphSimulator, teams_calendar: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams_calendar.create(spec, idempotency_key="key-1")
        (event,) = sim.events.values()
        assert event["transactionId"] == transaction_id(spec.meeting_id)
        assert "attendees" not in event and event["sensitivity"] == "private"
        assert created.reference == {"organizer": HOST, "event_id": event["id"]}
        assert (await teams_calendar.verify(spec, created)).confirmed == EXPECTED


class TestRetriedCreates:
    async def test_twenty_creates_under_faults_leave_one_meeting_each(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        created = {}
        for number in range(20):
            sim.create_faults.push(ALL_FAULTS[number % 4])
            spec = make_spec(meeting_id=f"meeting-{number}")
            created[spec.meeting_id] = await teams.create(spec, idempotency_key=f"k-{number}")
        assert sim.create_faults.served == [ALL_FAULTS[n % 4] for n in range(20)]
        assert len(sim.meetings) == 20
        for meeting_id, meeting in created.items():
            assert sim.meeting_for(meeting_id) == sim.meetings[meeting.provider_meeting_id]
        creates = [c for c in sim.calls if c[1].endswith("/createOrGet")]
        assert len(creates) == 40  # each request: the faulted attempt and one retry

    async def test_calendar_mode_retries_make_one_event_each(
        self, sim: graph.GraphSimulator, teams_calendar: TeamsProvider
    ) -> None:
        for number, fault in enumerate(ALL_FAULTS):
            sim.create_faults.push(fault)
            await teams_calendar.create(
                make_spec(meeting_id=f"m-{number}"), idempotency_key=f"k-{number}"
            )
        assert len(sim.events) == 4 and len(sim.meetings) == 4


class TestLifecycle:
    async def test_reschedule_keeps_the_meeting_and_its_link(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        moved = make_spec(start=spec.start + timedelta(days=1), topic="Moved planning")
        updated = await teams.update(moved, created.ref)
        assert updated.provider_meeting_id == created.provider_meeting_id
        assert updated.host == created.host
        stored = sim.meetings[created.provider_meeting_id]
        assert (stored["startDateTime"], stored["subject"]) == (
            "2030-03-05T15:00:00Z",
            "Moved planning",
        )
        assert len(sim.meetings) == 1

    async def test_cancel_deletes_and_a_second_cancel_is_harmless(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        await teams.delete(created.ref)
        assert sim.meetings == {}
        await teams.delete(created.ref)
        with pytest.raises(ProviderNotFound):
            await teams.verify(spec, created)

    async def test_calendar_mode_reschedule_and_cancel(
        self, sim: graph.GraphSimulator, teams_calendar: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams_calendar.create(spec, idempotency_key="key-1")
        moved = make_spec(start=spec.start + timedelta(hours=2))
        updated = await teams_calendar.update(moved, created.ref)
        (event,) = sim.events.values()
        assert event["start"] == {"dateTime": "2030-03-04T17:00:00", "timeZone": "UTC"}
        assert updated.host.url == created.host.url
        await teams_calendar.delete(created.ref)
        assert sim.events == {} and sim.meetings == {}

    async def test_end_for_all_is_refused_plainly(self, teams: TeamsProvider) -> None:
        created = await teams.create(make_spec(), idempotency_key="key-1")
        with pytest.raises(ProviderUnsupported):
            await teams.end(created.ref)

    async def test_participants_come_from_attendance_reports(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        created = await teams.create(make_spec(), idempotency_key="key-1")
        sim.add_attendance(
            created.provider_meeting_id,
            [
                {
                    "id": "r1",
                    "emailAddress": "Ivan@Example.com",
                    "identity": {"displayName": "Ivan"},
                    "attendanceIntervals": [
                        {
                            "joinDateTime": "2030-03-04T15:01:00Z",
                            "leaveDateTime": "2030-03-04T15:40:00Z",
                            "durationInSeconds": 2340,
                        }
                    ],
                }
            ],
        )
        (person,) = await teams.list_participants(created.ref)
        assert (person.name, person.email) == ("Ivan", "ivan@example.com")
        assert person.joined_at == datetime(2030, 3, 4, 15, 1, tzinfo=UTC)


class TestTokens:
    async def test_token_is_cached_and_refreshed_once_on_401(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        spec = make_spec()
        created = await teams.create(spec, idempotency_key="key-1")
        await teams.verify(spec, created)
        assert sim.token_requests == 1
        sim.revoke_tokens()
        assert (await teams.verify(spec, created)).mismatched == {}
        assert sim.token_requests == 2
        gets = [c for c in sim.calls if c[0] == "GET"]
        assert len(gets) == 3  # the refused GET was sent once more, not more

    async def test_a_wrong_secret_is_an_auth_failure_that_names_no_secret(
        self, sim: graph.GraphSimulator
    ) -> None:
        provider = make_provider(sim, client_secret="not-the-secret")
        with pytest.raises(ProviderAuthFailed) as caught:
            await provider.create(make_spec(), idempotency_key="key-1")
        await provider.aclose()
        assert "not-the-secret" not in str(caught.value)


class TestTokenAnswers:
    @pytest.mark.parametrize(
        ("response", "kind"),
        [
            (httpx.Response(503, headers={"Retry-After": "2"}), ProviderRetriable),
            (httpx.Response(400, json={"error": "invalid_scope"}), ProviderAuthFailed),
            (httpx.Response(200, json={"token_type": "Bearer"}), ProviderAuthFailed),
            (httpx.Response(200, json={"access_token": "t"}), ProviderError),
        ],
    )
    def test_token_answers_map_to_typed_errors(
        self, response: httpx.Response, kind: type[ProviderError]
    ) -> None:
        with pytest.raises(kind):
            token_from_response(response, provider="teams", clock=lambda: 0.0)


def _graph(status: int, error: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json={"error": error})


class TestErrorMapping:
    def test_a_named_property_becomes_the_field(self) -> None:
        error = graph_error(
            _graph(
                400, {"code": "BadRequest", "message": "bad scope", "target": "lobbyBypassSettings"}
            )
        )
        assert isinstance(error, ProviderRejected)
        assert error.field == "lobbyBypassSettings" and error.provider == "teams"

    def test_details_target_is_used_when_the_top_level_has_none(self) -> None:
        error = graph_error(
            _graph(
                400,
                {
                    "code": "BadRequest",
                    "message": "x",
                    "details": [{"code": "Invalid", "message": "y", "target": "allowMeetingChat"}],
                },
            )
        )
        assert isinstance(error, ProviderRejected) and error.field == "allowMeetingChat"

    @pytest.mark.parametrize(
        ("status", "kind"),
        [(401, ProviderAuthFailed), (403, ProviderAuthFailed), (404, ProviderNotFound)],
    )
    def test_statuses(self, status: int, kind: type[Exception]) -> None:
        assert isinstance(graph_error(_graph(status, {"code": "X", "message": "m"})), kind)

    def test_urls_and_tokens_are_scrubbed_from_messages(self) -> None:
        error = graph_error(
            _graph(
                400,
                {
                    "code": "BadRequest",
                    "message": "Invalid filter JoinWebUrl eq 'https://teams.micro"
                    "soft.com/l/meetup-join/secret' Bearer abc.def",
                },
            )
        )
        assert error is not None
        assert "https://" not in str(error) and "abc.def" not in str(error)

    async def test_a_refused_property_reaches_the_caller_as_rejected_with_field(
        self, teams: TeamsProvider
    ) -> None:
        created = await teams.create(make_spec(), idempotency_key="key-1")
        with pytest.raises(ProviderRejected) as caught:
            await teams.client.update_meeting(
                HOST, created.provider_meeting_id, {"joinWebUrl": "https://elsewhere.example"}
            )
        assert caught.value.field == "joinWebUrl"

    async def test_the_simulator_refuses_what_the_spec_refuses(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        created = await teams.create(make_spec(), idempotency_key="key-1")
        with pytest.raises(ProviderError):  # the simulator answers 500 with the violation
            await teams.client.update_meeting(
                HOST, created.provider_meeting_id, {"allowedPresenters": "Organizer"}
            )
        assert any("allowedPresenters" in v for v in sim.violations)
        sim.violations.clear()


class TestLock:
    async def test_lock_sends_everyone_but_the_organizer_to_the_lobby(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        loose = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True, sign_in_required=False
        )
        created = await teams.create(make_spec(settings=loose), idempotency_key="key-1")
        stored = sim.meetings[created.provider_meeting_id]
        assert stored["lobbyBypassSettings"]["scope"] == "everyone"

        await teams.lock(created.ref)

        assert stored["lobbyBypassSettings"] == {
            "scope": "organizer",
            "isDialInBypassEnabled": False,
        }

    async def test_a_tenant_that_keeps_the_lobby_open_makes_lock_fail_loudly(
        self, sim: graph.GraphSimulator, teams: TeamsProvider
    ) -> None:
        loose = dataclasses.replace(
            shipped_settings(), waiting_room=False, join_before_host=True, sign_in_required=False
        )
        created = await teams.create(make_spec(settings=loose), idempotency_key="key-1")
        sim.drop_lobby = True

        with pytest.raises(ProviderRejected):
            await teams.lock(created.ref)
