"""The outbox worker: retries with backoff, dead-letters, never sends a delivery twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.models import AuditEvent
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.db import utcnow
from provisioner.delivery.base import ChannelError, ChannelRejected, ChannelRetriable
from provisioner.delivery.chat_config import ChatUserNotFound
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.outcomes import backoff_seconds
from provisioner.delivery.worker import DeliveryWorker
from provisioner.settings import Settings, WorkerSettings
from provisioner.state import AppState
from tests.conftest import make_settings
from tests.factories import meeting_body
from tests.fakes.channel import FakeChannel
from tests.integration.meetings.test_db_faults import captured_logs


def worker_with(
    state: AppState, channel: FakeChannel, settings: Settings, worker_id: str = "w1"
) -> DeliveryWorker:
    return DeliveryWorker(
        state.db,
        {"email": channel},
        cipher=state.cipher,
        settings=settings.worker,
        worker_id=worker_id,
        rand=lambda: 0.0,
    )


async def statuses(state: AppState) -> list[str]:
    """Statuses of the invitations (alerts about failures are counted apart)."""
    async with state.db.session() as session:
        return sorted(
            (await session.scalars(select(Delivery.status).where(Delivery.role != "alert"))).all()
        )


class TestRetries:
    async def test_transient_failure_is_retried_then_sent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        channel = FakeChannel(failures=[ChannelRetriable("421 try later")])
        worker = worker_with(state, channel, settings)
        first = await worker.run_once()
        assert (first.claimed, first.sent, first.retried) == (4, 3, 1)
        await worker.drain()
        assert await statuses(state) == ["sent"] * 4
        assert len(channel.sent) == 4
        async with state.db.session() as session:
            actions = (await session.scalars(select(AuditEvent.action))).all()
        assert "delivery.retry_scheduled" in actions

    async def test_permanent_refusal_is_dead_lettered(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        channel = FakeChannel(failures=[ChannelRejected("550 no such user")])
        await worker_with(state, channel, settings).drain()
        assert await statuses(state) == ["dead", "sent", "sent", "sent"]
        async with state.db.session() as session:
            dead = (
                await session.scalars(
                    select(Delivery).where(Delivery.status == DeliveryStatus.DEAD)
                )
            ).one()
        assert dead.last_error is not None and "550" in dead.last_error

    async def test_a_dead_letter_alerts_the_host_and_it_privately(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
    ) -> None:
        settings = make_settings(
            tmp_path,
            database_url,
            issuer,
            jitsi_config,
            worker={"embedded": False, "alert_emails": ["it@example.com"]},
        )
        await client.post(
            "/api/v1/meetings",
            json=meeting_body(invitees=[{"email": "ana@example.com", "name": "Ana"}]),
            headers=host_headers,
        )
        # Both the host's copy and Ana's are refused: IT hears of both, the host of Ana's
        # (an alert about the host's own copy would take the road that just failed).
        rejected: list[ChannelError] = [ChannelRejected("550 no such user") for _ in range(2)]
        channel = FakeChannel(failures=rejected)
        await worker_with(state, channel, settings).drain()
        told = sorted((a.recipient.email, a.failed_recipient.email) for a in channel.alerts)
        assert told == [
            ("dana@example.com", "ana@example.com"),
            ("it@example.com", "ana@example.com"),
            ("it@example.com", "dana@example.com"),
        ]
        assert {a.reason for a in channel.alerts} == {"ChannelRejected"}
        async with state.db.session() as session:
            alerts = (
                await session.scalars(select(Delivery.status).where(Delivery.role == "alert"))
            ).all()
        assert sorted(alerts) == ["sent", "sent", "sent"]

    async def test_gives_up_after_max_attempts_once_the_retry_window_has_passed(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        await client.post(
            "/api/v1/meetings",
            json=meeting_body(invitees=[{"email": "ana@example.com", "name": "Ana"}]),
            headers=host_headers,
        )
        attempts = settings.worker.max_attempts * 2
        channel = FakeChannel(failures=[ChannelRetriable("down") for _ in range(attempts)])
        no_window = settings.worker.model_copy(update={"give_up_after_hours": 0})
        worker = worker_with(state, channel, settings.model_copy(update={"worker": no_window}))
        for _ in range(40):
            await worker.run_once()
            await asyncio.sleep(0.06)
            if "pending" not in await statuses(state):
                break
        assert await statuses(state) == ["dead", "dead"]
        assert channel.attempts == 2 * settings.worker.max_attempts

    async def test_temporary_failures_keep_retrying_within_the_window(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        """A relay down for longer than `max_attempts` backoffs delays the invitations;
        only a refusal, or a day of failing, dead-letters them."""
        await client.post(
            "/api/v1/meetings",
            json=meeting_body(invitees=[{"email": "ana@example.com", "name": "Ana"}]),
            headers=host_headers,
        )
        attempts = settings.worker.max_attempts + 2
        channel = FakeChannel(failures=[ChannelRetriable("down") for _ in range(2 * attempts)])
        worker = worker_with(state, channel, settings)
        while channel.attempts < 2 * attempts:
            await worker.run_once()
            await asyncio.sleep(0.06)
        assert await statuses(state) == ["pending", "pending"]

        await worker.drain()  # the relay is back: the channel accepts from now on

        assert await statuses(state) == ["sent", "sent"]


class TestConcurrentWorkers:
    async def test_two_workers_never_send_the_same_delivery(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        for i in range(5):
            await client.post(
                "/api/v1/meetings", json=meeting_body(topic=f"M{i}"), headers=host_headers
            )
        a, b = FakeChannel(), FakeChannel()
        await asyncio.gather(
            worker_with(state, a, settings, "a").drain(),
            worker_with(state, b, settings, "b").drain(),
        )
        sent = [c.delivery_id for c in a.sent + b.sent]
        assert len(sent) == len(set(sent)) == 20


class TestBackoff:
    def test_grows_exponentially_to_the_cap_and_honours_retry_after(self) -> None:
        settings = WorkerSettings(backoff_base_seconds=5, backoff_max_seconds=60)
        assert [backoff_seconds(n, settings, rand=lambda: 1.0) for n in (1, 2, 3, 5, 9)] == [
            5,
            10,
            20,
            60,
            60,
        ]
        assert backoff_seconds(1, settings, rand=lambda: 0.0) == 0
        assert backoff_seconds(1, settings, rand=lambda: 0.0, retry_after=30) == 30
        assert backoff_seconds(1, settings, rand=lambda: 0.0, retry_after=999) == 60


class TestChatPreferenceAndFallback:
    async def test_unconfigured_channel_is_refused_naming_the_invitee(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        body = meeting_body(
            invitees=[{"email": "ana@example.com", "name": "Ana", "channel": "slack"}]
        )
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["invitees[0].channel"]

    async def test_chat_user_not_found_falls_back_to_email_and_says_so(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        slack = FakeChannel(
            name="slack",
            failures=[
                ChatUserNotFound("no such Slack user"),
                ChatUserNotFound("no such Slack user"),
            ],
        )
        email = FakeChannel()
        state.channels = {"email": email, "slack": slack}
        body = meeting_body(
            invitees=[
                {"email": "ana@example.com", "name": "Ana", "channel": "slack"},
                {"email": "ben@example.com", "name": "Ben", "channel": "slack"},
            ]
        )
        created = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert created.status_code == 201, created.text
        assert [i["channel"] for i in created.json()["invitees"]] == ["slack", "slack"]
        worker = DeliveryWorker(
            state.db,
            state.channels,
            cipher=state.cipher,
            settings=settings.worker,
            worker_id="w",
            rand=lambda: 0.0,
        )
        await worker.drain()
        assert sorted(c.recipient.email for c in email.sent) == [
            "ana@example.com",
            "ben@example.com",
            "dana@example.com",
        ]
        assert slack.sent == []
        async with state.db.session() as session:
            rows = (await session.execute(select(Delivery.channel, Delivery.status))).all()
            fallbacks = (
                await session.scalars(
                    select(AuditEvent.action).where(AuditEvent.action == "delivery.fell_back")
                )
            ).all()
        assert sorted(rows) == [("email", "sent")] * 3
        assert len(fallbacks) == 2


class TestOutcomeLogLines:
    async def test_a_sent_line_is_written_only_once_its_outcome_is_committed(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        """The outcome's commit fails: no `delivery.sent` line claims what was rolled back
        (and a blocked log write can no longer happen while the row is locked)."""
        await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        worker = worker_with(state, FakeChannel(), settings)
        real = state.db

        class LosesSentOutcomes:
            """The real database, whose commit of a SENT outcome fails."""

            engine = real.engine

            @asynccontextmanager
            async def session(self) -> AsyncIterator[AsyncSession]:
                async with real.session() as session:
                    yield session
                    if any(
                        isinstance(row, Delivery) and row.status == DeliveryStatus.SENT
                        for row in session.identity_map.values()
                    ):
                        raise ConnectionResetError("the commit was lost")

        worker._db = LosesSentOutcomes()  # type: ignore[assignment]  # noqa: SLF001
        with captured_logs() as stream:
            with pytest.raises(ConnectionResetError):
                await worker.run_once()
        assert '"event": "delivery.sent"' not in stream.getvalue()
        assert "sent" not in await statuses(state)
        # The claimed rows wait for their lease to lapse, as after a crash; then all go out.
        async with real.session() as session:
            await session.execute(update(Delivery).values(lease_until=utcnow()))
        worker._db = real  # noqa: SLF001
        with captured_logs() as stream:
            await worker.drain()
        assert stream.getvalue().count('"event": "delivery.sent"') == 4
        assert await statuses(state) == ["sent"] * 4
