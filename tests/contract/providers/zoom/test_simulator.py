"""ZoomProvider end to end against the stateful Zoom simulator (spec-validated both ways).

What must hold: the meeting Zoom stores is what the policy says, verification notices
when it is not, retried creates never make a second meeting, the lifecycle keeps the same
meeting, tokens are fetched once and refreshed once, and errors are typed and clean.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from provisioner.meetings.enforcement import confirmed_enforcement, restrictive_controls
from provisioner.meetings.errors import VerificationFailed
from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import (
    ExpelsParticipants,
    Feature,
    LocksMeetings,
    MeetingProvider,
    MeetingSpec,
    Person,
)
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderNotFound,
    ProviderRejected,
)
from provisioner.providers.zoom import ZoomConfig, ZoomProvider
from tests.simulators.validation import Fault, FaultKind
from tests.simulators.zoom import ZoomSimulator

AUTH_OPTION = "signIn_sim"
HOST = Person("hanna@example.com", "Hanna Host")
INVITEES = (Person("ann@example.com", "Ann Lee"), Person("bob@partner.example.org", "Bob"))
SETTINGS = MeetingSettings(
    passcode_required=True,
    passcode_min_length=10,
    waiting_room=True,
    sign_in_required=True,
    sign_in_domains=("example.com", "partner.example.org"),
    join_before_host=False,
    presenters=Presenters.HOST_ONLY,
    chat=Chat.HOST_ONLY,
    mute_on_entry=True,
    per_invitee_links=True,
    invitee_domains=("example.com", "partner.example.org"),
    max_duration_minutes=240,
)


def make_spec(number: int = 1, **changes: Any) -> MeetingSpec:
    spec = MeetingSpec(
        meeting_id=f"00000000-0000-4000-8000-{number:012d}",
        topic="Quarterly review",
        start=datetime(2030, 1, 2, 9, 0, tzinfo=UTC),
        duration=timedelta(minutes=45),
        timezone="Europe/Berlin",
        host=HOST,
        invitees=INVITEES,
        settings=SETTINGS,
    )
    return replace(spec, **changes)


class Harness:
    def __init__(self, sim: ZoomSimulator, **config: Any) -> None:
        self.sim = sim
        self.sleeps: list[float] = []
        settings: dict[str, Any] = {
            "account_id": sim.account_id,
            "client_id": sim.client_id,
            "client_secret": sim.client_secret,
            # Never dialled: the transport is the simulator itself.
            "api_url": "http://127.0.0.1:9",
            "oauth_url": "http://127.0.0.1:9",
            "authentication_option": AUTH_OPTION,
            "read_timeout_seconds": 0.5,
            **config,
        }

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.provider = ZoomProvider(
            ZoomConfig(**settings), transport=sim.transport(), sleep=sleep, rand=lambda: 0.5
        )


@pytest.fixture
async def zoom() -> AsyncIterator[Harness]:
    harness = Harness(ZoomSimulator(hang_seconds=5.0))
    yield harness
    await harness.provider.aclose()
    assert harness.sim.violations == []


def posts(sim: ZoomSimulator, suffix: str) -> int:
    return sum(1 for method, path in sim.requests if method == "POST" and path.endswith(suffix))


async def test_it_is_a_meeting_provider_with_an_honest_table(zoom: Harness) -> None:
    provider = zoom.provider
    assert isinstance(provider, MeetingProvider)
    assert provider.features == {Feature.RESCHEDULE, Feature.END_FOR_ALL, Feature.PARTICIPANTS}
    # Zoom's REST API has no call to remove a participant or lock a running meeting.
    assert not isinstance(provider, ExpelsParticipants)
    assert not isinstance(provider, LocksMeetings)
    assert Control.INVITEE_DOMAINS not in provider.capabilities
    assert Control.MAX_DURATION not in provider.capabilities


async def test_create_then_verify_confirms_every_control(zoom: Harness) -> None:
    spec = make_spec()
    created = await zoom.provider.create(spec, idempotency_key="k")
    observed = await zoom.provider.verify(spec, created)

    assert observed.mismatched == {}
    assert observed.confirmed == zoom.provider.capabilities
    assert created.enforced == zoom.provider.capabilities
    [stored] = zoom.sim.meetings.values()
    assert stored["settings"]["waiting_room"] is True
    assert stored["settings"]["meeting_authentication"] is True
    assert stored["settings"]["use_pmi"] is False
    assert stored["password"] == created.host.passcode and len(stored["password"]) == 10
    assert created.shared is None
    assert set(created.personal) == {"ann@example.com", "bob@partner.example.org"}
    assert all(join.passcode == created.host.passcode for join in created.personal.values())


async def test_verification_catches_a_dropped_waiting_room(zoom: Harness) -> None:
    zoom.sim.drop_waiting_room = True
    spec = make_spec()
    created = await zoom.provider.create(spec, idempotency_key="k")
    observed = await zoom.provider.verify(spec, created)

    assert observed.mismatched == {Control.WAITING_ROOM: "waiting_room is off"}
    assert Control.WAITING_ROOM not in observed.confirmed
    # What the service does with it: the claimed control was contradicted -> refused.
    with pytest.raises(VerificationFailed, match="waiting_room"):
        confirmed_enforcement(
            restrictive_controls(spec.settings), created, observed, meeting_id=spec.meeting_id
        )


async def test_twenty_retried_creates_under_faults_leave_one_meeting_each(zoom: Harness) -> None:
    kinds = [
        FaultKind.ERROR_AFTER_COMMIT,
        FaultKind.HANG_AFTER_COMMIT,
        FaultKind.THROTTLE,
        FaultKind.UNAVAILABLE,
    ]
    specs = [make_spec(n) for n in range(20)]
    for number, spec in enumerate(specs):
        zoom.sim.create_faults.push(Fault(kinds[number % 4], retry_after="0"))
        if number % 5 == 0:  # and some registrant adds fail ambiguously too
            zoom.sim.registrant_faults.push(FaultKind.ERROR_AFTER_COMMIT)
        created = await zoom.provider.create(spec, idempotency_key=spec.meeting_id)
        assert (await zoom.provider.verify(spec, created)).mismatched == {}

    assert zoom.sim.create_faults.served == [kinds[n % 4] for n in range(20)]
    assert len(zoom.sim.meetings) == 20
    assert sorted(m["agenda"] for m in zoom.sim.meetings.values()) == sorted(
        f"provisioner:{spec.meeting_id}" for spec in specs
    )
    for registrants in zoom.sim.registrants.values():
        assert sorted(r["email"] for r in registrants) == [
            "ann@example.com",
            "bob@partner.example.org",
        ]
    # The throttled ones waited exactly what Retry-After said: 0 seconds.
    assert zoom.sleeps.count(0.0) == 5


async def test_registrant_links_each_differ(zoom: Harness) -> None:
    people = tuple(Person(f"person{n}@example.com", f"Person {n}") for n in range(6))
    created = await zoom.provider.create(make_spec(invitees=people), idempotency_key="k")

    links = [created.join_for(p.email).url for p in people]
    assert len(set(links)) == len(people)
    assert created.host.url not in links


async def test_reschedule_keeps_the_meeting_and_links_and_moves_the_time(zoom: Harness) -> None:
    spec = make_spec()
    created = await zoom.provider.create(spec, idempotency_key="k")
    moved = replace(
        spec,
        start=spec.start + timedelta(days=2),
        duration=timedelta(minutes=30),
        invitees=(*spec.invitees, Person("cy@example.com", "Cy")),
    )

    updated = await zoom.provider.update(moved, created.ref)

    assert updated.provider_meeting_id == created.provider_meeting_id
    stored = zoom.sim.meetings[int(created.provider_meeting_id)]
    assert (stored["start_time"], stored["duration"]) == ("2030-01-04T09:00:00Z", 30)
    assert updated.host == created.host
    for email, join in created.personal.items():
        assert updated.personal[email] == join
    assert "cy@example.com" in updated.personal
    assert posts(zoom.sim, "/registrants") == 3
    assert (await zoom.provider.verify(moved, updated)).mismatched == {}


async def test_cancel_deletes_and_a_second_cancel_is_harmless(zoom: Harness) -> None:
    created = await zoom.provider.create(make_spec(), idempotency_key="k")

    await zoom.provider.delete(created.ref)
    await zoom.provider.delete(created.ref)

    assert zoom.sim.meetings == {}
    assert zoom.sim.deleted == [int(created.provider_meeting_id)]
    with pytest.raises(ProviderNotFound, match="zoom GET /meetings/{id} answered 404"):
        await zoom.provider.verify(make_spec(), created)


async def test_end_for_all_and_live_participants(zoom: Harness) -> None:
    created = await zoom.provider.create(make_spec(), idempotency_key="k")
    meeting_id = int(created.provider_meeting_id)
    zoom.sim.participants[meeting_id] = [
        {
            "id": "p1",
            "user_name": "Ann Lee",
            "email": "Ann@Example.com",
            "join_time": "2030-01-02T09:01:00Z",
            "status": "in_meeting",
        },
        {"id": "p2", "user_name": "Mallory", "join_time": "2030-01-02T09:02:00Z"},
    ]

    people = await zoom.provider.list_participants(created.ref)
    await zoom.provider.end(created.ref)

    assert [(p.name, p.email) for p in people] == [
        ("Ann Lee", "ann@example.com"),
        ("Mallory", None),
    ]
    assert people[0].joined_at == datetime(2030, 1, 2, 9, 1, tzinfo=UTC)
    assert zoom.sim.ended == [meeting_id]


async def test_the_token_is_fetched_once_and_refreshed_once_on_401(zoom: Harness) -> None:
    spec = make_spec()
    created = await zoom.provider.create(spec, idempotency_key="k")
    await zoom.provider.verify(spec, created)
    assert zoom.sim.token_requests == 1

    zoom.sim.revoke_tokens()
    assert (await zoom.provider.verify(spec, created)).mismatched == {}
    assert zoom.sim.token_requests == 2
    assert zoom.provider.client.auth.fetches == 2


async def test_a_401_after_the_refresh_is_an_auth_failure(zoom: Harness) -> None:
    zoom.sim.refuse_tokens = True
    with pytest.raises(ProviderAuthFailed) as caught:
        await zoom.provider.create(make_spec(), idempotency_key="k")

    assert zoom.sim.token_requests == 2
    assert zoom.sim.meetings == {}
    assert zoom.sim.client_secret not in str(caught.value)


async def test_wrong_app_credentials_are_an_auth_failure_without_the_secret() -> None:
    harness = Harness(ZoomSimulator(), client_secret="not-the-secret")
    with pytest.raises(ProviderAuthFailed, match="token endpoint refused") as caught:
        await harness.provider.create(make_spec(), idempotency_key="k")
    await harness.provider.aclose()
    assert "not-the-secret" not in str(caught.value)


async def test_a_400_names_the_field_is_not_retried_and_leaks_nothing(zoom: Harness) -> None:
    zoom.sim.reject_creates.append(
        {
            "code": 300,
            "message": "Validation Failed.",
            "errors": [
                {
                    "field": "settings.authentication_domains",
                    "message": "Invalid domain, see https://zoom.sim.invalid/j/1?pwd=abc",
                }
            ],
        }
    )
    with pytest.raises(ProviderRejected) as caught:
        await zoom.provider.create(make_spec(), idempotency_key="k")

    error = caught.value
    assert error.field == "settings.authentication_domains"
    assert error.provider == "zoom"
    assert "zoom POST /users/{userId}/meetings answered 400 (Zoom error 300)" in str(error)
    assert "https://" not in str(error) and "pwd=" not in str(error)
    assert posts(zoom.sim, "/meetings") == 1
    assert zoom.sim.meetings == {}


async def test_what_zoom_cannot_do_is_refused_before_any_call(zoom: Harness) -> None:
    longer = replace(SETTINGS, passcode_min_length=12)
    with pytest.raises(ProviderRejected) as caught:
        await zoom.provider.create(make_spec(settings=longer), idempotency_key="k")
    assert caught.value.field == "settings.passcode_min_length"

    bare = Harness(zoom.sim, authentication_option=None)
    with pytest.raises(ProviderRejected) as caught:
        await bare.provider.create(make_spec(), idempotency_key="k")
    await bare.provider.aclose()
    assert caught.value.field == "settings.sign_in_domains"
    assert zoom.sim.requests == []


async def test_user_level_sharing_and_chat_are_claimed_only_when_already_strict(
    zoom: Harness,
) -> None:
    zoom.sim.user_settings.update(who_can_share_screen="all", allow_participants_chat_with=3)
    spec = make_spec()
    created = await zoom.provider.create(spec, idempotency_key="k")
    observed = await zoom.provider.verify(spec, created)

    assert Control.PRESENTERS not in created.enforced
    assert Control.CHAT not in created.enforced
    assert set(observed.mismatched) == {Control.PRESENTERS, Control.CHAT}
    enforced, not_enforced = confirmed_enforcement(
        restrictive_controls(spec.settings), created, observed, meeting_id=spec.meeting_id
    )
    assert {Control.PRESENTERS, Control.CHAT} <= not_enforced
    assert Control.WAITING_ROOM in enforced


async def test_the_simulator_refuses_requests_outside_the_spec(zoom: Harness) -> None:
    async with httpx.AsyncClient(transport=zoom.sim.transport(), base_url="http://sim") as client:
        token = (
            await client.post(
                "/oauth/token",
                params={"grant_type": "account_credentials", "account_id": zoom.sim.account_id},
                auth=(zoom.sim.client_id, zoom.sim.client_secret),
            )
        ).json()["access_token"]
        response = await client.post(
            "/users/hanna@example.com/meetings",
            json={"topic": "x", "type": 7, "password": "12345678901"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 500
    assert "is too long" in response.text and "is not one of" in response.text
    assert len(zoom.sim.violations) == 1
    zoom.sim.violations.clear()  # expected here; the fixture asserts none otherwise


async def test_a_failure_after_the_meeting_exists_deletes_it(zoom: Harness) -> None:
    zoom.sim.registrant_faults.push(FaultKind.UNAVAILABLE)  # retried, then...
    zoom.sim.reject_registrants.append(
        {
            "code": 300,
            "message": "Validation Failed.",
            "errors": [{"field": "email", "message": "Invalid field."}],
        }
    )
    with pytest.raises(ProviderRejected) as caught:
        await zoom.provider.create(make_spec(), idempotency_key="k")

    assert caught.value.field == "email"
    assert zoom.sim.meetings == {}  # no orphan: the caller never learnt its id
    assert len(zoom.sim.deleted) == 1


async def test_unreadable_host_settings_leave_sharing_and_chat_unclaimed(zoom: Harness) -> None:
    zoom.sim.settings_scope_missing = True
    spec = make_spec()
    created = await zoom.provider.create(spec, idempotency_key="k")
    observed = await zoom.provider.verify(spec, created)

    assert created.enforced == zoom.provider.capabilities - {Control.PRESENTERS, Control.CHAT}
    assert observed.mismatched == {
        Control.PRESENTERS: "the host's settings could not be read (scope user:read:admin?)",
        Control.CHAT: "the host's settings could not be read (scope user:read:admin?)",
    }


async def test_an_uninvited_participant_is_listed_with_an_id_and_the_meeting_ends(
    zoom: Harness,
) -> None:
    created = await zoom.provider.create(make_spec(), idempotency_key="k")
    invited = zoom.sim.join(created.provider_meeting_id, name="Ann Lee", email="ann@example.com")
    stranger = zoom.sim.join(created.provider_meeting_id, name="Mallory")

    people = await zoom.provider.list_participants(created.ref)
    await zoom.provider.end(created.ref)

    assert [(p.provider_participant_id, p.email) for p in people] == [
        (invited, "ann@example.com"),
        (stranger, None),
    ]
    assert zoom.sim.ended == [int(created.provider_meeting_id)]


class TestComplianceScan:
    async def test_upcoming_meetings_of_every_user_are_read_with_their_settings(
        self, zoom: Harness
    ) -> None:
        ours = await zoom.provider.create(make_spec(), idempotency_key="k")
        weak = zoom.sim.add_meeting(
            "carl@example.com",
            password="",
            waiting_room=False,
            join_before_host=True,
            meeting_authentication=False,
            pmi=True,
        )
        zoom.sim.users.append("idle@example.com")

        found = {
            m.provider_meeting_id: m
            for m in await zoom.provider.list_upcoming(
                hosts=[], until=datetime(2031, 1, 1, tzinfo=UTC)
            )
        }

        assert set(found) == {ours.provider_meeting_id, str(weak)}
        mine = found[ours.provider_meeting_id]
        assert mine.created_by == make_spec().meeting_id
        assert (mine.passcode_set, mine.waiting_room, mine.join_before_host) == (True, True, False)
        assert (mine.sign_in_required, mine.personal_meeting_id) == (True, False)
        other = found[str(weak)]
        assert other.created_by is None
        assert other.host_email == "carl@example.com"
        assert (other.passcode_set, other.waiting_room, other.join_before_host) == (
            False,
            False,
            True,
        )
        assert (other.sign_in_required, other.personal_meeting_id) == (False, True)

    async def test_meetings_after_the_window_are_left_out(self, zoom: Harness) -> None:
        zoom.sim.add_meeting("carl@example.com", start_time="2032-05-01T10:00:00Z")

        found = await zoom.provider.list_upcoming(
            hosts=["carl@example.com"], until=datetime(2031, 1, 1, tzinfo=UTC)
        )

        assert found == []

    async def test_apply_settings_patches_only_the_weak_ones(self, zoom: Harness) -> None:
        weak = zoom.sim.add_meeting(
            "carl@example.com", password="", waiting_room=False, join_before_host=True
        )
        [meeting] = await zoom.provider.list_upcoming(
            hosts=["carl@example.com"], until=datetime(2031, 1, 1, tzinfo=UTC)
        )

        changed = await zoom.provider.apply_settings(meeting, SETTINGS)

        assert changed == {Control.PASSCODE, Control.WAITING_ROOM, Control.JOIN_BEFORE_HOST}
        stored = zoom.sim.meetings[weak]
        assert len(stored["password"]) == 10
        assert stored["settings"]["waiting_room"] is True
        assert stored["settings"]["join_before_host"] is False
        assert ("PATCH", f"/meetings/{weak}") in zoom.sim.requests
        [again] = await zoom.provider.list_upcoming(
            hosts=["carl@example.com"], until=datetime(2031, 1, 1, tzinfo=UTC)
        )
        assert await zoom.provider.apply_settings(again, SETTINGS) == frozenset()
