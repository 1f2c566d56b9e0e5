"""WebexProvider end to end against the stateful Webex simulator (spec-validated both ways).

What must hold: the meeting Webex stores is what the policy says, verification notices
when the lobby is dropped, retried creates and invites never duplicate, the lifecycle
keeps the same meeting, tokens are used once and refreshed once, and errors are typed
and clean.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

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
from provisioner.providers.webex import WebexConfig, WebexProvider
from tests.simulators.validation import Fault, FaultKind
from tests.simulators.webex import WebexSimulator

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
BASE = "http://127.0.0.1:9"  # never dialled: the transport is the simulator itself


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
    def __init__(self, sim: WebexSimulator, *, refresh: bool = True, **config: Any) -> None:
        self.sim = sim
        self.sleeps: list[float] = []
        settings: dict[str, Any] = {"api_url": BASE, "read_timeout_seconds": 0.5, **config}
        if refresh:
            settings.update(
                token_url=f"{BASE}/access_token",
                client_id=sim.client_id,
                client_secret=sim.client_secret,
                refresh_token=sim.refresh_token,
            )
        else:
            settings.setdefault("access_token", "wsim-static-token")

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.provider = WebexProvider(
            WebexConfig(**settings), transport=sim.transport(), sleep=sleep, rand=lambda: 0.5
        )


@pytest.fixture
async def webex() -> AsyncIterator[Harness]:
    harness = Harness(WebexSimulator(hang_seconds=5.0))
    yield harness
    await harness.provider.aclose()
    assert harness.sim.violations == []


def invitee_emails(sim: WebexSimulator, meeting_id: str) -> list[str]:
    return sorted(i["email"] for i in sim.invitees[meeting_id])


async def test_it_is_a_meeting_provider_with_an_honest_table(webex: Harness) -> None:
    provider = webex.provider
    assert isinstance(provider, MeetingProvider)
    assert provider.features == {
        Feature.RESCHEDULE,
        Feature.END_FOR_ALL,
        Feature.PARTICIPANTS,
        Feature.EXPEL,
        Feature.LOCK,
    }
    assert isinstance(provider, ExpelsParticipants)
    assert isinstance(provider, LocksMeetings)
    # Sign-in is a Control Hub site setting the meetings API cannot set or read; every
    # invitee gets the same webLink.
    assert Control.SIGN_IN_REQUIRED not in provider.capabilities
    assert Control.PER_INVITEE_LINKS not in provider.capabilities


async def test_create_then_verify_confirms_every_control(webex: Harness) -> None:
    spec = make_spec()
    created = await webex.provider.create(spec, idempotency_key="k")
    observed = await webex.provider.verify(spec, created)

    assert observed.mismatched == {}
    assert observed.confirmed == webex.provider.capabilities == created.enforced
    stored = webex.sim.meetings[created.provider_meeting_id]
    assert stored["unlockedMeetingJoinSecurity"] == "allowJoinWithLobby"
    assert stored["password"] == created.host.passcode
    assert created.shared == created.host and created.personal == {}
    assert invitee_emails(webex.sim, created.provider_meeting_id) == [
        "ann@example.com",
        "bob@partner.example.org",
    ]


async def test_verification_catches_a_dropped_lobby(webex: Harness) -> None:
    webex.sim.drop_waiting_room = True
    spec = make_spec()
    created = await webex.provider.create(spec, idempotency_key="k")
    observed = await webex.provider.verify(spec, created)

    assert observed.mismatched == {
        Control.WAITING_ROOM: "unlockedMeetingJoinSecurity is 'allowJoin'"
    }
    with pytest.raises(VerificationFailed, match="waiting_room"):
        confirmed_enforcement(
            restrictive_controls(spec.settings), created, observed, meeting_id=spec.meeting_id
        )


async def test_twenty_retried_creates_under_faults_leave_one_meeting_each(
    webex: Harness,
) -> None:
    kinds = [
        FaultKind.ERROR_AFTER_COMMIT,
        FaultKind.HANG_AFTER_COMMIT,
        FaultKind.THROTTLE,
        FaultKind.UNAVAILABLE,
    ]
    specs = [make_spec(n) for n in range(20)]
    for number, spec in enumerate(specs):
        webex.sim.create_faults.push(Fault(kinds[number % 4], retry_after="0"))
        created = await webex.provider.create(spec, idempotency_key=spec.meeting_id)
        assert (await webex.provider.verify(spec, created)).mismatched == {}

    assert webex.sim.create_faults.served == [kinds[n % 4] for n in range(20)]
    assert len(webex.sim.meetings) == 20
    assert sorted(m["integrationTags"][0] for m in webex.sim.meetings.values()) == sorted(
        f"provisioner:{spec.meeting_id}" for spec in specs
    )
    for meeting_id in webex.sim.meetings:
        assert len(webex.sim.invitees[meeting_id]) == 2
    assert webex.sleeps.count(0.0) == 5  # Retry-After: 0 honoured for each 429


async def test_reschedule_keeps_the_meeting_and_invites_newcomers_once(webex: Harness) -> None:
    spec = make_spec()
    created = await webex.provider.create(spec, idempotency_key="k")
    moved = replace(
        spec,
        start=spec.start + timedelta(days=2),
        invitees=(*spec.invitees, Person("cy@example.com", "Cy"), Person("dee@example.com", "Dee")),
    )
    webex.sim.invitee_faults.push(FaultKind.ERROR_AFTER_COMMIT, FaultKind.HANG_AFTER_COMMIT)

    updated = await webex.provider.update(moved, created.ref)

    assert updated.provider_meeting_id == created.provider_meeting_id
    assert updated.host == created.host
    stored = webex.sim.meetings[created.provider_meeting_id]
    assert (stored["start"], stored["end"]) == ("2030-01-04T09:00:00Z", "2030-01-04T09:45:00Z")
    assert invitee_emails(webex.sim, created.provider_meeting_id) == [
        "ann@example.com",
        "bob@partner.example.org",
        "cy@example.com",
        "dee@example.com",
    ]
    assert webex.sim.invitee_faults.served == [
        FaultKind.ERROR_AFTER_COMMIT,
        FaultKind.HANG_AFTER_COMMIT,
    ]
    assert (await webex.provider.verify(moved, updated)).mismatched == {}


async def test_cancel_deletes_and_a_second_cancel_is_harmless(webex: Harness) -> None:
    created = await webex.provider.create(make_spec(), idempotency_key="k")

    await webex.provider.delete(created.ref)
    await webex.provider.delete(created.ref)

    assert webex.sim.meetings == {}
    assert webex.sim.deleted == [created.provider_meeting_id]
    with pytest.raises(ProviderNotFound, match="webex GET /meetings/{meetingId} answered 404"):
        await webex.provider.verify(make_spec(), created)


async def test_end_for_all_and_participants(webex: Harness) -> None:
    created = await webex.provider.create(make_spec(), idempotency_key="k")
    webex.sim.participants[created.provider_meeting_id] = [
        {
            "id": "p1",
            "displayName": "Ann Lee",
            "email": "ann@example.com",
            "invitee": True,
            "state": "joined",
            "joinedTime": "2030-01-02T09:01:00Z",
        },
        {"id": "p2", "displayName": "Guest", "state": "lobby"},
    ]

    people = await webex.provider.list_participants(created.ref)
    await webex.provider.end(created.ref)

    assert [(p.name, p.email) for p in people] == [("Ann Lee", "ann@example.com"), ("Guest", None)]
    assert webex.sim.ended == [created.provider_meeting_id]


async def test_the_token_is_refreshed_once_and_reused(webex: Harness) -> None:
    spec = make_spec()
    created = await webex.provider.create(spec, idempotency_key="k")
    await webex.provider.verify(spec, created)
    assert webex.sim.token_requests == 1

    webex.sim.revoke_tokens()
    assert (await webex.provider.verify(spec, created)).mismatched == {}
    assert webex.sim.token_requests == 2


async def test_a_401_after_the_refresh_is_an_auth_failure(webex: Harness) -> None:
    webex.sim.refuse_tokens = True
    with pytest.raises(ProviderAuthFailed):
        await webex.provider.create(make_spec(), idempotency_key="k")
    assert webex.sim.token_requests == 2
    assert webex.sim.meetings == {}


async def test_a_refused_static_token_is_an_auth_failure_without_the_token() -> None:
    harness = Harness(WebexSimulator(), refresh=False, access_token="wsim-wrong-token")
    with pytest.raises(ProviderAuthFailed) as caught:
        await harness.provider.create(make_spec(), idempotency_key="k")
    await harness.provider.aclose()
    assert "wsim-wrong-token" not in str(caught.value)
    assert harness.sim.requests == [("POST", "/meetings")] * 2  # one refresh, then give up


async def test_a_400_names_the_field_and_is_not_retried(webex: Harness) -> None:
    webex.sim.reject_creates.append(
        "Meeting password validation failed. A mix of uppercase and lowercase letters "
        "(A, a, B, b, C, c, etc.) is required."
    )
    with pytest.raises(ProviderRejected) as caught:
        await webex.provider.create(make_spec(), idempotency_key="k")

    assert caught.value.field == "password"
    assert "webex POST /meetings answered 400" in str(caught.value)
    assert "(trackingId SIM_400)" in str(caught.value)
    assert webex.sim.requests.count(("POST", "/meetings")) == 1
    assert webex.sim.meetings == {}


async def test_what_the_site_cannot_take_is_refused_before_any_call(webex: Harness) -> None:
    longer = replace(SETTINGS, passcode_min_length=20)
    with pytest.raises(ProviderRejected) as caught:
        await webex.provider.create(make_spec(settings=longer), idempotency_key="k")
    assert caught.value.field == "settings.passcode_min_length"
    assert webex.sim.requests == []


def test_config_needs_one_complete_way_to_authenticate() -> None:
    with pytest.raises(ValidationError, match="set access_token"):
        WebexConfig()
    with pytest.raises(ValidationError, match="needs all of"):
        WebexConfig(client_id="c", refresh_token="r")
    with pytest.raises(ValidationError, match="https"):
        WebexConfig(access_token="t", api_url="http://webex.example.com/v1")
    assert WebexConfig(access_token="t").api_base == "https://webexapis.com/v1"


async def test_the_simulator_refuses_requests_outside_the_spec(webex: Harness) -> None:
    async with httpx.AsyncClient(transport=webex.sim.transport(), base_url="http://sim") as client:
        response = await client.post(
            "/meetings",
            json={"title": "x", "start": "s", "end": "e", "unlockedMeetingJoinSecurity": "lobby"},
            headers={"Authorization": "Bearer wsim-static-token"},
        )
    assert response.status_code == 500
    assert "'lobby' is not one of" in response.text
    assert len(webex.sim.violations) == 1
    webex.sim.violations.clear()  # expected here; the fixture asserts none otherwise


class TestInMeetingControls:
    async def test_an_uninvited_participant_is_seen_expelled_and_the_meeting_locked(
        self, webex: Harness
    ) -> None:
        created = await webex.provider.create(make_spec(), idempotency_key="k")
        meeting_id = created.provider_meeting_id
        ann = webex.sim.join(meeting_id, name="Ann Lee", email="Ann@example.com", invitee=True)
        stranger = webex.sim.join(meeting_id, name="Mallory")

        people = await webex.provider.list_participants(created.ref)
        await webex.provider.expel(created.ref, stranger)
        await webex.provider.lock(created.ref)
        after = await webex.provider.list_participants(created.ref)

        assert [(p.provider_participant_id, p.email) for p in people] == [
            (ann, "ann@example.com"),
            (stranger, None),
        ]
        assert webex.sim.expelled == [stranger]
        assert [p.provider_participant_id for p in after] == [ann]
        assert webex.sim.locked == {meeting_id}

    async def test_a_participant_of_another_meeting_is_not_expelled(self, webex: Harness) -> None:
        first = await webex.provider.create(make_spec(1), idempotency_key="a")
        second = await webex.provider.create(make_spec(2), idempotency_key="b")
        elsewhere = webex.sim.join(second.provider_meeting_id, name="Bob")

        with pytest.raises(ProviderNotFound):
            await webex.provider.expel(first.ref, elsewhere)

        assert webex.sim.expelled == []

    async def test_locking_a_meeting_that_is_gone_is_not_found(self, webex: Harness) -> None:
        created = await webex.provider.create(make_spec(), idempotency_key="k")
        await webex.provider.delete(created.ref)

        with pytest.raises(ProviderNotFound):
            await webex.provider.lock(created.ref)


class TestComplianceScan:
    UNTIL = datetime(2031, 1, 1, tzinfo=UTC)

    async def test_upcoming_meetings_are_listed_with_their_settings(self, webex: Harness) -> None:
        ours = await webex.provider.create(make_spec(), idempotency_key="k")
        weak = webex.sim.add_meeting(
            HOST.email, password="", lobby=False, join_before_host=True, personal_room=True
        )

        found = {
            m.reference["series_id"]: m
            for m in await webex.provider.list_upcoming(hosts=[HOST.email], until=self.UNTIL)
        }

        assert set(found) == {ours.provider_meeting_id, weak}
        mine = found[ours.provider_meeting_id]
        assert mine.created_by == make_spec().meeting_id
        assert (mine.passcode_set, mine.waiting_room, mine.join_before_host) == (True, True, False)
        assert mine.sign_in_required is None  # a site setting the API does not report
        other = found[weak]
        assert other.created_by is None
        assert (other.passcode_set, other.waiting_room, other.join_before_host) == (
            False,
            False,
            True,
        )
        assert other.personal_meeting_id is True

    async def test_apply_settings_patches_the_series_and_a_re_read_shows_it(
        self, webex: Harness
    ) -> None:
        weak = webex.sim.add_meeting(HOST.email, password="", lobby=False, join_before_host=True)
        [meeting] = await webex.provider.list_upcoming(hosts=[HOST.email], until=self.UNTIL)

        changed = await webex.provider.apply_settings(meeting, SETTINGS)
        [again] = await webex.provider.list_upcoming(hosts=[HOST.email], until=self.UNTIL)

        assert changed == {Control.PASSCODE, Control.WAITING_ROOM, Control.JOIN_BEFORE_HOST}
        assert len(webex.sim.meetings[weak]["password"]) >= 10
        assert (again.passcode_set, again.waiting_room, again.join_before_host) == (
            True,
            True,
            False,
        )
        assert await webex.provider.apply_settings(again, SETTINGS) == frozenset()
