"""The attendance watcher: each unknown participant of a running meeting is reported to the
host once, privately, by email (received here by aiosmtpd)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from provisioner.delivery.models import Delivery
from provisioner.meetings.watcher import AttendanceWatcher, watch_once
from provisioner.providers.base import MeetingRef, Participant
from provisioner.providers.errors import ProviderRetriable
from provisioner.settings import Settings, WatcherSettings
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import (
    SettingsFactory,
    audit_of,
    created_meeting,
    received,
    running_meeting,
    smtp_email,
    text_of,
)
from tests.support.smtp import SmtpServer

PUBLIC_URL = "https://meetings.example.com"
ANA = Participant(name="Ana Lima", email="ana@example.com", provider_participant_id="p-2")
MALLORY = Participant(name="Mallory", email=None, provider_participant_id="p-66")
EVE = Participant(name="Eve", email="eve@evil.example", provider_participant_id="p-67")


@pytest.fixture
def settings(settings_with: SettingsFactory, smtp_server: SmtpServer) -> Settings:
    return settings_with(email=smtp_email(smtp_server))


async def tick(state: AppState) -> int:
    result = await watch_once(state.db, state.providers, public_url=PUBLIC_URL)
    return result.alerts_queued


class TestWatcher:
    async def test_each_unknown_participant_is_reported_to_the_host_once_by_email(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
        smtp_server: SmtpServer,
    ) -> None:
        meeting_id = await running_meeting(client, host_headers)
        await state.worker.drain()
        invitations = len(smtp_server.handler.messages)
        fake.participants = [ANA, MALLORY]

        assert await tick(state) == 1
        assert await tick(state) == 0  # the same stranger is not reported again
        fake.participants = [ANA, MALLORY, EVE]
        assert await tick(state) == 1  # a new one is

        assert await state.worker.drain() == 2
        alerts = smtp_server.handler.messages[invitations:]
        assert [m.rcpt_tos for m in alerts] == [("dana@example.com",), ("dana@example.com",)]
        texts = [text_of(message) for message in received(smtp_server, since=invitations)]
        assert "Mallory" in texts[0] and "Eve (eve@evil.example)" in texts[1]
        assert all(f"{PUBLIC_URL}/meetings/{meeting_id}" in text for text in texts)
        assert not any(fake.created[0] in text for text in texts)  # never the join link

        events = await audit_of(state, meeting_id)
        reported = [d for a, _, d in events if a == "meeting.unknown_participant"]
        assert [d["participant_id"] for d in reported] == ["p-66", "p-67"]

    async def test_a_name_that_looks_like_a_secret_link_cannot_silence_the_alert(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        await running_meeting(client, host_headers)
        fake.participants = [
            Participant(name="https://x.test/?jwt=1", email=None, provider_participant_id="p-9")
        ]
        assert await tick(state) == 1
        async with state.db.session() as session:
            [notice] = (
                await session.scalars(select(Delivery).where(Delivery.role == "notice"))
            ).all()
        assert notice.recipient_email == "dana@example.com"
        assert notice.notice is not None
        assert "jwt=" not in json.dumps(notice.notice)
        assert "not on the invite list" in notice.notice["lines"][0]

    async def test_meetings_that_are_not_running_are_left_alone(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        await created_meeting(client, host_headers, provider="fake")  # next week
        fake.participants = [MALLORY]
        result = await watch_once(state.db, state.providers, public_url=PUBLIC_URL)
        assert (result.meetings_checked, result.alerts_queued) == (0, 0)
        later = datetime.now(UTC) + timedelta(days=7, minutes=10)
        result = await watch_once(state.db, state.providers, public_url=PUBLIC_URL, now=later)
        assert (result.meetings_checked, result.alerts_queued) == (1, 1)

    async def test_an_ended_meeting_is_not_watched(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting_id = await running_meeting(client, host_headers)
        await client.post(f"/api/v1/meetings/{meeting_id}/end", headers=host_headers)
        fake.participants = [MALLORY]
        assert await tick(state) == 0

    async def test_a_provider_failure_is_counted_and_the_next_tick_recovers(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
    ) -> None:
        flaky = FlakyList(participants=[MALLORY])
        state.providers = {"fake": flaky}
        await running_meeting(client, host_headers)
        first = await watch_once(state.db, state.providers, public_url=PUBLIC_URL)
        assert (first.provider_failures, first.alerts_queued) == (1, 0)
        assert await tick(state) == 1

    async def test_the_loop_wakes_the_delivery_worker_and_stops_when_asked(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        await running_meeting(client, host_headers)
        fake.participants = [MALLORY]
        stop = asyncio.Event()
        watcher = AttendanceWatcher(
            state.db,
            state.providers,
            settings=WatcherSettings(enabled=True, interval_seconds=5),
            public_url=PUBLIC_URL,
            on_queued=stop.set,
        )
        await asyncio.wait_for(watcher.run(stop), timeout=30)
        async with state.db.session() as session:
            notices = (
                await session.scalars(select(Delivery).where(Delivery.role == "notice"))
            ).all()
        assert [(n.recipient_email, n.status) for n in notices] == [("dana@example.com", "pending")]


class FlakyList(FakeProvider):
    def __init__(self, participants: list[Participant]) -> None:
        super().__init__(participants=participants)
        self.failures = 1

    async def list_participants(self, meeting: MeetingRef) -> list[Participant]:
        if self.failures:
            self.failures -= 1
            raise ProviderRetriable("timed out", provider=self.name)
        return await super().list_participants(meeting)
