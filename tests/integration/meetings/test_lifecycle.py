"""Reschedule, cancel and end: the same meeting, and everyone hears about it privately."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from provisioner.audit.models import AuditEvent
from provisioner.delivery.models import Delivery
from provisioner.policy.model import Control
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.factories import meeting_body
from tests.fakes.channel import FakeChannel
from tests.fakes.provider import FakeProvider
from tests.integration.delivery.test_worker import worker_with


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], **overrides: object
) -> dict[str, object]:
    response = await client.post(
        "/api/v1/meetings", json=meeting_body(**overrides), headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


class TestReschedule:
    async def test_same_meeting_new_times_everyone_re_invited_with_higher_sequence(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = await create(client, host_headers)
        channel = FakeChannel()
        worker = worker_with(state, channel, settings)
        await worker.drain()
        new_start = (datetime.now(UTC) + timedelta(days=9)).replace(microsecond=0)
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}",
            headers=host_headers,
            json={"start": new_start.isoformat(), "duration_minutes": 30},
        )
        assert response.status_code == 200, response.text
        moved = response.json()
        assert moved["id"] == created["id"]
        assert moved["start"] == new_start.isoformat().replace("+00:00", "Z")
        assert moved["host_join"]["url"] != created["host_join"]["url"]  # type: ignore[index]
        await worker.drain()
        updates = [c for c in channel.sent if c.sequence == 1]
        assert len(updates) == 4
        assert {c.uid for c in channel.sent} == {f"{created['id']}@provisioner"}
        assert all(c.method == "REQUEST" and c.start == new_start for c in updates)

    async def test_unsent_invitations_are_superseded(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        created = await create(client, host_headers)
        await client.patch(
            f"/api/v1/meetings/{created['id']}", headers=host_headers, json={"topic": "Renamed"}
        )
        async with state.db.session() as session:
            rows = (await session.execute(select(Delivery.sequence, Delivery.status))).all()
        assert sorted(rows) == [(0, "superseded")] * 4 + [(1, "pending")] * 4

    async def test_longer_than_the_policy_allows_is_422(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        created = await create(client, host_headers)
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}",
            headers=host_headers,
            json={"duration_minutes": 600},
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "duration_minutes"

    async def test_empty_change_is_422(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        created = await create(client, host_headers)
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}", headers=host_headers, json={}
        )
        assert response.status_code == 422


class TestCancel:
    async def test_cancel_sends_method_cancel_to_everyone_and_freezes_the_meeting(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        fake = FakeProvider()
        state.providers = {"fake": fake}
        created = await create(client, host_headers, provider="fake")
        response = await client.delete(f"/api/v1/meetings/{created['id']}", headers=host_headers)
        assert response.status_code == 200
        assert response.json()["state"] == "cancelled"
        assert fake.deleted == fake.created
        channel = FakeChannel()
        await worker_with(state, channel, settings).drain()
        assert sorted(c.method for c in channel.sent) == ["CANCEL"] * 4
        again = await client.patch(
            f"/api/v1/meetings/{created['id']}", headers=host_headers, json={"topic": "x"}
        )
        assert again.status_code == 409
        async with state.db.session() as session:
            assert "meeting.cancelled" in (await session.scalars(select(AuditEvent.action))).all()

    async def test_someone_else_cannot_cancel(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], issuer: object
    ) -> None:
        from provisioner.auth.local_issuer import LocalIssuer

        assert isinstance(issuer, LocalIssuer)
        created = await create(client, host_headers)
        other = {
            "Authorization": "Bearer "
            + issuer.token(
                subject="erin", email="erin@example.com", name="Erin", groups=["employees"]
            )
        }
        response = await client.delete(f"/api/v1/meetings/{created['id']}", headers=other)
        assert response.status_code == 404


class TestEnd:
    async def test_end_for_all_where_the_provider_can(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        fake = FakeProvider()
        state.providers = {"fake": fake}
        created = await create(client, host_headers, provider="fake")
        response = await client.post(f"/api/v1/meetings/{created['id']}/end", headers=host_headers)
        assert response.status_code == 200
        assert response.json()["state"] == "ended"
        assert fake.ended == fake.created

    async def test_jitsi_says_plainly_it_cannot(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        created = await create(client, host_headers)
        response = await client.post(f"/api/v1/meetings/{created['id']}/end", headers=host_headers)
        assert response.status_code == 422
        assert response.json()["type"].endswith("/provider-feature-unsupported")


class TestRescheduleThatWeakensTheMeeting:
    async def test_is_cancelled_everywhere_and_reported(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        fake = FakeProvider()
        state.providers = {"fake": fake}
        created = await create(client, host_headers, provider="fake")
        fake.mismatch = {Control.WAITING_ROOM: "waiting room switched off"}
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}", headers=host_headers, json={"topic": "Moved"}
        )
        assert response.status_code == 502
        assert response.json()["type"].endswith("/verification-failed")
        assert fake.deleted == fake.created
        detail = await client.get(f"/api/v1/meetings/{created['id']}", headers=host_headers)
        assert detail.json()["state"] == "cancelled"
        channel = FakeChannel()
        await worker_with(state, channel, settings).drain()
        assert sorted(c.method for c in channel.sent) == ["CANCEL"] * 4


class TestChangingTheInviteList:
    NEW_LIST = [
        {"email": "ana@example.com", "name": "Ana Lima"},
        {"email": "chen@partner.example.org", "name": "Chen Wei"},
        {"email": "eve@example.com", "name": "Eve Adams"},
    ]

    async def test_added_are_invited_removed_get_a_cancel_and_their_link_is_revoked(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        fake = FakeProvider()
        state.providers = {"fake": fake}
        created = await create(client, host_headers, provider="fake")
        channel = FakeChannel()
        worker = worker_with(state, channel, settings)
        await worker.drain()
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}",
            headers=host_headers,
            json={"invitees": self.NEW_LIST},
        )
        assert response.status_code == 200, response.text
        assert [i["email"] for i in response.json()["invitees"]] == [
            "ana@example.com",
            "chen@partner.example.org",
            "eve@example.com",
        ]
        assert fake.revoked == ["ben@example.com"]
        await worker.drain()
        latest = {(c.recipient.email, c.method) for c in channel.sent if c.sequence == 1}
        assert latest == {
            ("dana@example.com", "REQUEST"),
            ("ana@example.com", "REQUEST"),
            ("chen@partner.example.org", "REQUEST"),
            ("eve@example.com", "REQUEST"),
            ("ben@example.com", "CANCEL"),
        }
        async with state.db.session() as session:
            event = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "meeting.rescheduled")
                )
            ).one()
        assert event.details["invitees_removed"] == 1
        assert event.details["links_revoked"] == "yes"

    async def test_jitsi_says_the_removed_link_cannot_be_revoked(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        created = await create(client, host_headers)
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}",
            headers=host_headers,
            json={"invitees": self.NEW_LIST},
        )
        assert response.status_code == 200, response.text
        assert all(i["personal_link"] for i in response.json()["invitees"])
        async with state.db.session() as session:
            event = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.action == "meeting.rescheduled")
                )
            ).one()
        assert event.details["links_revoked"] == "not possible on jitsi"

    async def test_a_disallowed_domain_is_refused_naming_the_invitee(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        created = await create(client, host_headers)
        response = await client.patch(
            f"/api/v1/meetings/{created['id']}",
            headers=host_headers,
            json={"invitees": [*self.NEW_LIST, {"email": "x@elsewhere.test", "name": "X"}]},
        )
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["invitees[3].email"]
