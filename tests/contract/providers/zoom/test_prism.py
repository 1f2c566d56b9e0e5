"""Zoom's requests against Stoplight Prism serving Zoom's own OpenAPI document.

Every call the provider makes -- create under the shipped locked policy, registrants,
verify, reschedule, end, participants, cancel, the marker lookup -- must draw zero request
violations, and the bodies that carry the policy are asserted byte for byte (Prism lets
unknown properties through, so a typo would otherwise pass).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from provisioner.policy.document import load_policy
from provisioner.policy.model import Control
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import ExistingMeeting, MeetingSpec, Person
from provisioner.providers.zoom import ZoomConfig, ZoomProvider
from tests.contract.providers import RecordingTransport
from tests.support.prism import SPECS, PrismServer, prism

REPO = Path(__file__).resolve().parents[4]
AUTH_OPTION = "signIn_D8cJuqWVQ623CI4Q8yQK0Q"
MEETING_ID = "5f0c5a52-2d55-4c0e-9a59-0a4c8d1b7e01"
TOKEN = {"access_token": "prism-token", "token_type": "bearer", "expires_in": 3599}
PASSCODE = re.compile(r"^[A-HJ-NP-Za-km-np-z2-9]{10}$")


@pytest.fixture(scope="module")
def server() -> Iterator[PrismServer]:
    with prism(SPECS / "zoom" / "meetings.prism.json") as running:
        yield running


@pytest.fixture
async def zoom(server: PrismServer) -> AsyncIterator[tuple[ZoomProvider, RecordingTransport]]:
    recorder = RecordingTransport(httpx.AsyncHTTPTransport(), local={"/oauth/token": TOKEN})
    config = ZoomConfig(
        account_id="acct",
        client_id="client",
        client_secret="secret",
        api_url=server.base_url,
        oauth_url=server.base_url,
        authentication_option=AUTH_OPTION,
        marker_lookup_pages=2,
    )
    provider = ZoomProvider(config, transport=recorder)
    yield provider, recorder
    await provider.aclose()


def shipped_spec() -> MeetingSpec:
    settings = effective_for_groups(load_policy(REPO / "config" / "policy.yaml"), []).settings
    return MeetingSpec(
        meeting_id=MEETING_ID,
        topic="Quarterly review",
        start=datetime(2030, 1, 2, 9, 0, tzinfo=UTC),
        duration=timedelta(minutes=45),
        timezone="Europe/Berlin",
        host=Person("hanna@example.com", "Hanna Host"),
        invitees=(Person("ann@example.com", "Ann Lee"), Person("bob@partner.example.org", "Bob")),
        settings=settings,
    )


SETTINGS_BODY = {
    "use_pmi": False,
    "waiting_room": True,
    "join_before_host": False,
    "mute_upon_entry": True,
    "meeting_authentication": True,
    "approval_type": 1,
    "email_notification": False,
    "registrants_email_notification": False,
    "registrants_confirmation_email": False,
    "authentication_option": AUTH_OPTION,
    "authentication_domains": "example.com,partner.example.org",
    "registration_type": 1,
    "show_share_button": False,
}


async def test_create_under_the_shipped_policy_passes_prism_with_the_exact_body(
    zoom: tuple[ZoomProvider, RecordingTransport],
) -> None:
    provider, recorder = zoom

    await provider.create(shipped_spec(), idempotency_key="key-1")

    assert recorder.problems() == []
    [create] = recorder.find("POST", "/users/hanna@example.com/meetings")
    body = dict(create.body)
    assert PASSCODE.match(body.pop("password"))
    assert body == {
        "topic": "Quarterly review",
        "type": 2,
        "start_time": "2030-01-02T09:00:00Z",
        "duration": 45,
        "timezone": "Europe/Berlin",
        "agenda": f"provisioner:{MEETING_ID}",
        "default_password": False,
        "settings": SETTINGS_BODY,
    }
    registrants = [e.body for e in recorder.find("POST", "/meetings/", "/registrants")]
    assert registrants == [
        {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee", "auto_approve": True},
        {"email": "bob@partner.example.org", "first_name": "Bob", "auto_approve": True},
    ]
    calls = [(e.method, e.path) for e in recorder.exchanges]
    # The meeting first; then the registrants, alongside one read of the host's settings.
    assert calls[0] == ("POST", "/users/hanna@example.com/meetings")
    assert calls.count(("GET", "/users/hanna@example.com/settings")) == 1


async def test_verify_reschedule_end_participants_cancel_and_lookup_pass_prism(
    zoom: tuple[ZoomProvider, RecordingTransport],
) -> None:
    provider, recorder = zoom
    spec = shipped_spec()
    created = await provider.create(spec, idempotency_key="key-2")
    moved = replace(spec, start=spec.start + timedelta(days=1), topic="Moved review")

    await provider.verify(spec, created)
    await provider.update(moved, created.ref)
    await provider.list_participants(created.ref)
    await provider.end(created.ref)
    await provider.delete(created.ref)
    await provider.find_created(MEETING_ID, host_email="hanna@example.com")

    assert recorder.problems() == []
    [patch] = recorder.find("PATCH", f"/meetings/{created.provider_meeting_id}")
    assert patch.body == {
        "topic": "Moved review",
        "start_time": "2030-01-03T09:00:00Z",
        "duration": 45,
        "timezone": "Europe/Berlin",
        "agenda": f"provisioner:{MEETING_ID}",
        "settings": SETTINGS_BODY,
    }
    [end] = recorder.find("PUT", "/meetings/", "/status")
    assert end.body == {"action": "end"}
    [delete] = recorder.find("DELETE", "/meetings/")
    assert delete.query == {"schedule_for_reminder": "false", "cancel_meeting_reminder": "false"}
    participants = recorder.find("GET", "/metrics/meetings/")  # Prism's example pages on
    assert participants and participants[0].query["type"] == "live"
    lookups = recorder.find("GET", "/users/hanna@example.com/meetings")
    assert lookups and lookups[0].query == {"type": "scheduled", "page_size": "300"}


async def test_revoking_removed_invitees_passes_prism(
    zoom: tuple[ZoomProvider, RecordingTransport],
) -> None:
    provider, recorder = zoom
    created = await provider.create(shipped_spec(), idempotency_key="key-3")
    await provider.revoke_invitees(created.ref, ["Bob@Partner.example.org"])

    assert recorder.problems() == []
    [revoke] = recorder.find("PUT", "/meetings/", "/registrants/status")
    assert revoke.body == {
        "action": "cancel",
        "registrants": [{"email": "bob@partner.example.org"}],
    }


async def test_the_compliance_scan_reads_and_fixes_within_the_spec(
    zoom: tuple[ZoomProvider, RecordingTransport],
) -> None:
    provider, recorder = zoom
    weak = ExistingMeeting(
        provider="zoom",
        provider_meeting_id="85746065432",
        host_email="carl@example.com",
        topic="Team sync",
        start=None,
        passcode_set=False,
        waiting_room=False,
        sign_in_required=False,
        join_before_host=True,
        personal_meeting_id=False,
    )
    settings = shipped_spec().settings

    found = await provider.list_upcoming(hosts=[], until=datetime(2031, 1, 1, tzinfo=UTC))
    changed = await provider.apply_settings(weak, settings)

    assert recorder.problems() == []
    assert found, "Prism's example user has an example meeting"
    assert recorder.find("GET", "/users")[0].query["status"] == "active"
    listing = recorder.find("GET", "/users/", "/meetings")[0]
    assert listing.query["type"] == "upcoming"
    [patch] = recorder.find("PATCH", "/meetings/85746065432")
    body = dict(patch.body)
    assert PASSCODE.match(body.pop("password"))
    assert body == {
        "settings": {
            "waiting_room": True,
            "meeting_authentication": True,
            "authentication_option": AUTH_OPTION,
            "authentication_domains": ",".join(settings.sign_in_domains),
            "join_before_host": False,
        }
    }
    assert changed == {
        Control.PASSCODE,
        Control.WAITING_ROOM,
        Control.SIGN_IN_REQUIRED,
        Control.JOIN_BEFORE_HOST,
    }
