"""A calendar integration manages the meetings it created on an employee's behalf: it reads,
reschedules, cancels and ends them (never seeing the host's own link); nothing else."""

from __future__ import annotations

import httpx
import pytest

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.state import AppState
from tests.factories import meeting_body
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import audit_of, fake, running_meeting  # noqa: F401 (fixture)

ALL = ("meetings:read", "meetings:write", "meetings:write:on_behalf")
DANA = {"email": "dana@example.com", "name": "Dana Host"}


def integration(issuer: LocalIssuer, client_id: str = "calendar-sync") -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.client_token(client_id, scopes=ALL)}"}


async def made_by(
    client: httpx.AsyncClient, headers: dict[str, str], **overrides: object
) -> dict[str, object]:
    created = await client.post(
        "/api/v1/meetings",
        json=meeting_body(provider="fake", on_behalf_of=DANA, **overrides),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body: dict[str, object] = created.json()
    return body


async def test_the_integration_reads_reschedules_and_cancels_what_it_created(
    client: httpx.AsyncClient,
    issuer: LocalIssuer,
    state: AppState,
    fake: FakeProvider,  # noqa: F811
) -> None:
    calendar = integration(issuer)
    created = await made_by(client, calendar)
    location = f"/api/v1/meetings/{created['id']}"
    assert created["host_join"] is None

    read = await client.get(location, headers=calendar)
    assert read.status_code == 200, read.text
    assert read.json()["host_join"] is None  # the host's link is the host's alone
    listed = await client.get("/api/v1/meetings", headers=calendar)
    assert [m["id"] for m in listed.json()["data"]] == [created["id"]]

    moved = await client.patch(location, json={"topic": "Moved in the calendar"}, headers=calendar)
    assert moved.status_code == 200, moved.text
    assert moved.json()["topic"] == "Moved in the calendar" and moved.json()["host_join"] is None

    cancelled = await client.delete(location, headers=calendar)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    actors = {actor for _, actor, _ in await audit_of(state, str(created["id"]))}
    assert "client:calendar-sync" in actors


async def test_the_host_still_sees_the_link_and_other_integrations_see_nothing(
    client: httpx.AsyncClient,
    issuer: LocalIssuer,
    host_headers: dict[str, str],
    fake: FakeProvider,  # noqa: F811
) -> None:
    created = await made_by(client, integration(issuer))
    location = f"/api/v1/meetings/{created['id']}"
    other = integration(issuer, "another-calendar")

    assert (await client.get(location, headers=other)).status_code == 404
    assert (await client.patch(location, json={"topic": "x"}, headers=other)).status_code == 404
    assert (await client.delete(location, headers=other)).status_code == 404
    assert (await client.get("/api/v1/meetings", headers=other)).json()["data"] == []

    as_host = await client.get(location, headers=host_headers)  # Dana, signed in as herself
    assert as_host.status_code == 200 and as_host.json()["host_join"] is not None


async def test_the_integration_may_end_it_but_not_work_it_as_a_responder(
    client: httpx.AsyncClient,
    issuer: LocalIssuer,
    state: AppState,
    fake: FakeProvider,  # noqa: F811
) -> None:
    calendar = integration(issuer)
    created = await made_by(client, calendar)
    location = f"/api/v1/meetings/{created['id']}"

    for action in ("rotate", "lock"):
        refused = await client.post(f"{location}/{action}", headers=calendar)
        assert refused.status_code == 403, (action, refused.text)
    assert (await client.get(f"{location}/attendance", headers=calendar)).status_code == 403

    ended = await client.post(f"{location}/end", headers=calendar)
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "ended"
    events = await audit_of(state, str(created["id"]))
    (details,) = [d for action, _, d in events if action == "meeting.ended"]
    assert details["as"] == "integration"


@pytest.mark.parametrize("scopes", [("meetings:write",), ("meetings:read",)])
async def test_scopes_still_decide(
    client: httpx.AsyncClient,
    issuer: LocalIssuer,
    fake: FakeProvider,  # noqa: F811
    scopes: tuple[str, ...],
) -> None:
    created = await made_by(client, integration(issuer))
    token = issuer.client_token("calendar-sync", scopes=scopes)
    headers = {"Authorization": f"Bearer {token}"}
    location = f"/api/v1/meetings/{created['id']}"
    read = await client.get(location, headers=headers)
    write = await client.patch(location, json={"topic": "x"}, headers=headers)
    assert (read.status_code, write.status_code) == (
        (403, 200) if scopes == ("meetings:write",) else (200, 403)
    )
