"""Rotating a leaked link: a new meeting replaces the old one, everyone invited receives the
new details privately (by real SMTP), the old meeting is ended and deleted, and the old link
is never sent again. A provider failure at any step leaves nothing half-done."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from sqlalchemy import select

from provisioner.delivery.models import Delivery
from provisioner.meetings.models import Meeting
from provisioner.policy.model import Control
from provisioner.providers.base import MeetingRef, MeetingSpec, ProvisionedMeeting
from provisioner.providers.errors import ProviderRetriable
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import (
    SettingsFactory,
    actions_of,
    audit_of,
    created_meeting,
    parse_email,
    running_meeting,
    smtp_email,
)
from tests.support.smtp import SmtpServer

INVITED = {"dana@example.com", "ana@example.com", "ben@example.com", "chen@partner.example.org"}


@pytest.fixture
def settings(settings_with: SettingsFactory, smtp_server: SmtpServer) -> Settings:
    """The real email channel, sending to aiosmtpd over STARTTLS with AUTH."""
    return settings_with(email=smtp_email(smtp_server))


def received(smtp_server: SmtpServer, since: int = 0) -> list[tuple[str, str, Any]]:
    """(recipient, every decoded text part, the VEVENT) of each message after `since`."""
    out = []
    for raw in smtp_server.handler.messages[since:]:
        message = parse_email(raw.content)
        texts: list[str] = []
        event = None
        for part in message.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            texts.append(payload.decode("utf-8", "replace"))
            if part.get_content_type() == "text/calendar":
                [event] = icalendar.Calendar.from_ical(payload).walk("VEVENT")
        [recipient] = raw.rcpt_tos
        out.append((recipient, "\n".join(texts), event))
    return out


async def rotate(
    client: httpx.AsyncClient, headers: dict[str, str], meeting_id: object, **body: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/meetings/{meeting_id}/rotate", headers=headers, json=body or None
    )


class TestRotation:
    async def test_new_details_reach_everyone_and_the_old_link_is_dead_and_never_resent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
        smtp_server: SmtpServer,
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        assert await state.worker.drain() == 4
        old_provider_id = fake.created[0]
        first = received(smtp_server)
        assert all(old_provider_id in text for _, text, _ in first)  # the link that leaked

        response = await rotate(client, host_headers, old["id"], reason="posted in a chat")
        assert response.status_code == 201, response.text
        new = response.json()
        assert response.headers["Location"] == f"/api/v1/meetings/{new['id']}"
        assert new["id"] != old["id"] and new["state"] == "verified"
        assert new["host_join"]["passcode"] != old["host_join"]["passcode"]
        assert new["settings"] == old["settings"]
        assert [i["email"] for i in new["invitees"]] == [i["email"] for i in old["invitees"]]
        new_provider_id = fake.created[1]
        assert fake.deleted == [old_provider_id]  # the leaked meeting is gone at the provider

        assert await state.worker.drain() == 4
        after = received(smtp_server, since=4)
        assert {recipient for recipient, _, _ in after} == INVITED
        for _, text, event in after:
            assert new_provider_id in text
            assert old_provider_id not in text
            # The same calendar entry, updated in place: same UID, higher SEQUENCE.
            assert str(event["UID"]) == f"{old['id']}@provisioner"
            assert int(event["SEQUENCE"]) == 1
        assert await state.worker.drain() == 0  # nothing of the old meeting is left to send

        async with state.db.session() as session:
            rows = {m.id: m for m in await session.scalars(select(Meeting))}
        assert rows[old["id"]].state == "rotated"
        assert rows[new["id"]].rotated_from_id == old["id"]
        old_audit = await audit_of(state, str(old["id"]))
        new_audit = await audit_of(state, new["id"])
        rotated = next(d for a, _, d in old_audit if a == "meeting.rotated")
        assert rotated["new_meeting_id"] == new["id"] and rotated["as"] == "host"
        assert rotated["reason"] == "posted in a chat"
        assert ("meeting.replaces", "dana") in [(a, actor) for a, actor, _ in new_audit]
        completed = next(d for a, _, d in old_audit if a == "meeting.rotation_completed")
        assert completed["deleted_at_provider"] is True

    async def test_unsent_invitations_of_the_old_meeting_are_never_sent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
        smtp_server: SmtpServer,
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        response = await rotate(client, host_headers, old["id"])
        assert response.status_code == 201
        assert await state.worker.drain() == 4
        messages = received(smtp_server)
        assert {recipient for recipient, _, _ in messages} == INVITED
        assert not any(fake.created[0] in text for _, text, _ in messages)
        async with state.db.session() as session:
            old_rows = (
                await session.scalars(select(Delivery).where(Delivery.meeting_id == old["id"]))
            ).all()
        assert {d.status for d in old_rows} == {"superseded"}

    async def test_a_running_meeting_is_ended_before_it_is_deleted(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        old_id = await running_meeting(client, host_headers)
        response = await rotate(client, host_headers, old_id)
        assert response.status_code == 201
        assert fake.ended == [fake.created[0]]
        assert fake.deleted == [fake.created[0]]

    async def test_an_ended_meeting_can_still_be_rotated(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        """Ending a disrupted call leaves its link live at the provider: rotating it after
        the end must work (and deletes it there without ending it a second time)."""
        old_id = await running_meeting(client, host_headers)
        ended = await client.post(f"/api/v1/meetings/{old_id}/end", headers=host_headers)
        assert ended.status_code == 200, ended.text
        response = await rotate(client, host_headers, old_id)
        assert response.status_code == 201, response.text
        assert fake.ended == [fake.created[0]]
        assert fake.deleted == [fake.created[0]]
        gone = await client.get(f"/api/v1/meetings/{old_id}", headers=host_headers)
        assert gone.json()["state"] == "rotated"

    async def test_a_responder_may_rotate_any_meeting_and_never_sees_the_host_link(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        responder_headers: dict[str, str],
        stranger_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        assert (await rotate(client, stranger_headers, old["id"])).status_code == 404
        response = await rotate(client, responder_headers, old["id"])
        assert response.status_code == 201
        assert response.json()["host_join"] is None
        events = await audit_of(state, str(old["id"]))
        assert ("meeting.rotated", "rosa") in [(a, actor) for a, actor, _ in events]
        assert next(d for a, _, d in events if a == "meeting.rotated")["as"] == "responder"
        # The host still owns the new meeting and sees their new link.
        mine = await client.get(f"/api/v1/meetings/{response.json()['id']}", headers=host_headers)
        assert mine.status_code == 200 and mine.json()["host_join"] is not None


class TestRotationFailures:
    async def test_create_failure_leaves_the_old_meeting_live_and_a_retry_makes_one_new(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        fake.create_failures = [ProviderRetriable("busy", provider="fake")]
        failed = await rotate(client, host_headers, old["id"])
        assert failed.status_code == 503
        assert fake.deleted == []  # the old meeting was not touched
        detail = await client.get(f"/api/v1/meetings/{old['id']}", headers=host_headers)
        assert detail.json()["state"] == "verified"
        actions = await actions_of(state, str(old["id"]))
        assert "meeting.rotation_failed" in actions

        retried = await rotate(client, host_headers, old["id"])
        assert retried.status_code == 201
        async with state.db.session() as session:
            successors = (
                await session.scalars(select(Meeting).where(Meeting.rotated_from_id == old["id"]))
            ).all()
        assert sorted(m.state for m in successors) == ["failed", "verified"]
        assert len(fake.created) == 2  # the failed attempt created nothing

    async def test_a_weaker_new_meeting_is_deleted_and_never_sent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        fake.mismatch = {Control.WAITING_ROOM: "waiting room off"}
        response = await rotate(client, host_headers, old["id"])
        assert response.status_code == 502
        assert fake.deleted == [fake.created[1]]  # the new one, not the old
        async with state.db.session() as session:
            pending = (
                await session.scalars(
                    select(Delivery).where(
                        Delivery.meeting_id != old["id"], Delivery.status == "pending"
                    )
                )
            ).all()
        assert pending == []

    async def test_delete_failure_says_the_old_link_is_live_and_a_retry_finishes_it(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
    ) -> None:
        flaky = FlakyDelete()
        state.providers = {"fake": flaky}
        old = await created_meeting(client, host_headers, provider="fake")
        incomplete = await rotate(client, host_headers, old["id"])
        assert incomplete.status_code == 502
        problem = incomplete.json()
        assert problem["type"].endswith("/rotation-incomplete")
        assert "old link may still work" in problem["detail"]
        assert flaky.deleted == []

        retried = await rotate(client, host_headers, old["id"])
        assert retried.status_code == 201
        assert flaky.deleted == [flaky.created[0]]
        assert len(flaky.created) == 2  # no second new meeting
        assert str(flaky.created[1]) in retried.json()["host_join"]["url"]
        actions = await actions_of(state, str(old["id"]))
        assert actions.count("meeting.rotated") == 1
        assert "meeting.rotation_incomplete" in actions
        assert "meeting.rotation_completed" in actions

    async def test_a_second_rotation_while_one_runs_is_409(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
    ) -> None:
        slow = SlowCreate()
        state.providers = {"fake": slow}
        old = await created_meeting(client, host_headers, provider="fake")
        slow.gate.clear()
        slow.entered.clear()
        first = asyncio.create_task(rotate(client, host_headers, old["id"]))
        await asyncio.wait_for(slow.entered.wait(), timeout=30)
        second = await rotate(client, host_headers, old["id"])
        slow.gate.set()
        assert second.status_code == 409
        assert second.json()["type"].endswith("/rotation-in-progress")
        assert (await asyncio.wait_for(first, timeout=30)).status_code == 201
        assert len(slow.created) == 2

    async def test_a_cancelled_meeting_cannot_be_rotated(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], fake: FakeProvider
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        await client.delete(f"/api/v1/meetings/{old['id']}", headers=host_headers)
        response = await rotate(client, host_headers, old["id"])
        assert response.status_code == 409
        assert len(fake.created) == 1

    async def test_a_bad_reason_is_422_naming_the_field(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], fake: FakeProvider
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        response = await rotate(client, host_headers, old["id"], reason="x" * 201)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "reason"


class FlakyDelete(FakeProvider):
    """Fails the first delete (a provider outage), then works."""

    def __init__(self) -> None:
        super().__init__()
        self.delete_failures = 1

    async def delete(self, meeting: MeetingRef) -> None:
        if self.delete_failures:
            self.delete_failures -= 1
            raise ProviderRetriable("provider down", provider=self.name)
        await super().delete(meeting)


class SlowCreate(FakeProvider):
    """Holds a create until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        self.entered.set()
        await self.gate.wait()
        return await super().create(spec, idempotency_key=idempotency_key)


class TestAbandonedRotation:
    async def test_an_attempt_whose_process_died_does_not_block_the_meeting_forever(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
        fake: FakeProvider,
    ) -> None:
        old = await created_meeting(client, host_headers, provider="fake")
        fake.create_failures = [ProviderRetriable("busy", provider="fake")]
        await rotate(client, host_headers, old["id"])  # leaves a failed successor row
        async with state.db.session() as session:
            [attempt] = (
                await session.scalars(select(Meeting).where(Meeting.rotated_from_id == old["id"]))
            ).all()
            # As if a process had died while creating it, long ago.
            attempt.state = "provisioning"
            stale = settings.idempotency.stale_after_seconds + 60
            attempt.updated_at = datetime.now(UTC) - timedelta(seconds=stale)
        response = await rotate(client, host_headers, old["id"])
        assert response.status_code == 201
        actions = await actions_of(state, attempt.id)
        assert "meeting.reconciled" in actions
