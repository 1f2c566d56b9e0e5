"""What a claimed batch sends: each recipient's newest message, uninvites worded as such,
and a row that cannot be read dies alone instead of blocking its batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from provisioner.db import utcnow
from provisioner.delivery.base import DeliveryContext, DeliveryReceipt
from provisioner.delivery.batch import BatchLoader
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.worker import DeliveryWorker
from provisioner.meetings.models import Meeting
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.factories import meeting_body
from tests.fakes.channel import FakeChannel
from tests.fakes.provider import FakeProvider
from tests.integration.delivery.test_worker import worker_with
from tests.integration.meetings.test_lifecycle import create

BEN = "ben@example.com"
WITHOUT_BEN = [
    {"email": "ana@example.com", "name": "Ana Lima"},
    {"email": "chen@partner.example.org", "name": "Chen Wei"},
]


async def patch(
    client: httpx.AsyncClient, headers: dict[str, str], meeting_id: object, **change: object
) -> None:
    response = await client.patch(f"/api/v1/meetings/{meeting_id}", headers=headers, json=change)
    assert response.status_code == 200, response.text


async def cancel(client: httpx.AsyncClient, headers: dict[str, str], meeting_id: object) -> None:
    response = await client.delete(f"/api/v1/meetings/{meeting_id}", headers=headers)
    assert response.status_code == 200, response.text


async def stall_in_flight(state: AppState, **where: object) -> None:
    """Leave the matching pending rows as a worker that died mid-send leaves them: claimed,
    with a lease that has run out, so the next worker claims them again."""
    filters = [getattr(Delivery, column) == value for column, value in where.items()]
    async with state.db.session() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING, *filters)
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by="a-worker-that-died",
                lease_until=utcnow() - timedelta(seconds=1),
            )
        )


def received(channel: FakeChannel, email: str) -> list[tuple[str, int]]:
    return [(c.method, c.sequence) for c in channel.sent if c.recipient.email == email]


@pytest.fixture
def fake_provider(state: AppState) -> FakeProvider:
    """Changing the invite list needs a provider that can revoke a link (Jitsi cannot)."""
    fake = FakeProvider()
    state.providers = {"fake": fake}
    return fake


@dataclass(frozen=True)
class Sent:
    """A meeting on the fake provider whose invitations have all gone out."""

    meeting: dict[str, object]
    channel: FakeChannel
    worker: DeliveryWorker


@pytest.fixture
async def sent(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    settings: Settings,
    fake_provider: FakeProvider,
) -> Sent:
    created = await create(client, host_headers, provider="fake")
    channel = FakeChannel()
    worker = worker_with(state, channel, settings)
    await worker.drain()
    return Sent(created, channel, worker)


@pytest.mark.usefixtures("fake_provider")
class TestNewestMessagePerRecipient:
    async def test_a_removed_invitees_cancel_survives_a_later_change(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        sent: Sent,
    ) -> None:
        created, channel, worker = sent.meeting, sent.channel, sent.worker

        await patch(client, host_headers, created["id"], invitees=WITHOUT_BEN)
        await patch(client, host_headers, created["id"], topic="Renamed")
        await worker.drain()

        # The rename queues nothing for Ben, so nothing replaces his CANCEL.
        assert received(channel, BEN) == [("REQUEST", 0), ("CANCEL", 1)]
        # Everyone still invited hears only of the newest version.
        assert received(channel, "ana@example.com") == [("REQUEST", 0), ("REQUEST", 2)]

    async def test_a_removed_invitees_cancel_survives_a_rotation(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        sent: Sent,
    ) -> None:
        created, channel, worker = sent.meeting, sent.channel, sent.worker

        await patch(client, host_headers, created["id"], invitees=WITHOUT_BEN)
        rotated = await client.post(
            f"/api/v1/meetings/{created['id']}/rotate", headers=host_headers
        )
        assert rotated.status_code == 201, rotated.text
        await worker.drain()

        # The new meeting invites only the others: Ben hears of his removal all the same.
        assert received(channel, BEN) == [("REQUEST", 0), ("CANCEL", 1)]
        assert "ana@example.com" in {c.recipient.email for c in channel.sent if c.sequence > 1}

    async def test_a_removed_invitees_cancel_survives_the_meetings_cancellation(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        sent: Sent,
    ) -> None:
        created, channel, worker = sent.meeting, sent.channel, sent.worker

        await patch(client, host_headers, created["id"], invitees=WITHOUT_BEN)
        await cancel(client, host_headers, created["id"])
        await worker.drain()

        assert received(channel, BEN) == [("REQUEST", 0), ("CANCEL", 1)]
        assert received(channel, "ana@example.com") == [("REQUEST", 0), ("CANCEL", 2)]
        # By the time it goes out the meeting itself is cancelled, and that is the news.
        [bens_cancel] = [c for c in channel.sent if c.recipient.email == BEN and c.sequence]
        assert not bens_cancel.uninvited

    async def test_a_removed_invitees_cancel_in_flight_during_a_later_change_still_goes_out(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        sent: Sent,
    ) -> None:
        created, channel, worker = sent.meeting, sent.channel, sent.worker
        await patch(client, host_headers, created["id"], invitees=WITHOUT_BEN)
        await stall_in_flight(state, recipient_email=BEN)  # not superseded: not pending

        await patch(client, host_headers, created["id"], topic="Renamed")
        await worker.drain()

        assert received(channel, BEN) == [("REQUEST", 0), ("CANCEL", 1)]

    async def test_an_invitation_in_flight_during_a_change_is_not_sent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = await create(client, host_headers, provider="fake")
        await stall_in_flight(state)
        await patch(client, host_headers, created["id"], topic="Renamed")
        channel = FakeChannel()

        await worker_with(state, channel, settings).drain()

        assert sorted({c.sequence for c in channel.sent}) == [1]
        assert len(channel.sent) == 4
        async with state.db.session() as session:
            old = (
                await session.scalars(select(Delivery.status).where(Delivery.sequence == 0))
            ).all()
        assert old == [DeliveryStatus.SUPERSEDED] * 4

    async def test_an_invitation_in_flight_when_the_meeting_is_cancelled_is_not_sent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = await create(client, host_headers, provider="fake")
        await stall_in_flight(state)
        await cancel(client, host_headers, created["id"])
        channel = FakeChannel()

        await worker_with(state, channel, settings).drain()

        assert sorted(c.method for c in channel.sent) == ["CANCEL"] * 4

    async def test_an_invitation_in_flight_when_the_meeting_is_rotated_is_not_sent(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = await create(client, host_headers, provider="fake")
        await stall_in_flight(state)
        response = await client.post(
            f"/api/v1/meetings/{created['id']}/rotate", headers=host_headers
        )
        assert response.status_code == 201, response.text
        channel = FakeChannel()

        await worker_with(state, channel, settings).drain()

        # Only the new meeting's invitations: the old link is never sent.
        assert {c.meeting_id for c in channel.sent} == {response.json()["id"]}
        assert len(channel.sent) == 4


@pytest.mark.usefixtures("fake_provider")
class TestUninvite:
    async def test_a_removed_invitees_cancel_is_an_uninvite_and_the_rest_are_not(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        sent: Sent,
    ) -> None:
        created, channel, worker = sent.meeting, sent.channel, sent.worker

        await patch(client, host_headers, created["id"], invitees=WITHOUT_BEN)
        await worker.drain()

        latest = {(c.recipient.email, c.method, c.uninvited) for c in channel.sent if c.sequence}
        assert latest == {
            (BEN, "CANCEL", True),
            ("ana@example.com", "REQUEST", False),
            ("chen@partner.example.org", "REQUEST", False),
            ("dana@example.com", "REQUEST", False),
        }

    async def test_a_cancelled_meetings_cancel_is_not_an_uninvite(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = await create(client, host_headers, provider="fake")
        await cancel(client, host_headers, created["id"])
        channel = FakeChannel()

        await worker_with(state, channel, settings).drain()

        assert [(c.method, c.uninvited) for c in channel.sent] == [("CANCEL", False)] * 4


class TestUnreadableRow:
    async def test_one_unreadable_meeting_does_not_block_its_batch(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        good = await create(client, host_headers)
        bad = await create(client, host_headers, topic="corrupt")
        async with state.db.session() as session:
            # Not a mapping: reading its settings raises TypeError, none of the errors an
            # unreadable secret raises.
            await session.execute(update(Meeting).where(Meeting.id == bad["id"]).values(settings=5))
        channel = FakeChannel()
        worker = worker_with(state, channel, settings)

        first = await worker.run_once()

        assert first.claimed == 8
        assert first.sent == 4
        assert {c.meeting_id for c in channel.sent} == {good["id"]}
        async with state.db.session() as session:
            rows = (
                await session.execute(
                    select(Delivery.role, Delivery.status, Delivery.last_error).where(
                        Delivery.meeting_id == bad["id"]
                    )
                )
            ).all()
        invitations = [(status, error) for role, status, error in rows if role != "alert"]
        assert invitations == [(DeliveryStatus.DEAD, "unreadable row: TypeError")] * 4
        # The host hears of each invitee not reached (not of their own copy), at once.
        alerts = [status for role, status, _ in rows if role == "alert"]
        assert alerts == [DeliveryStatus.PENDING] * 3
        await worker.drain()
        assert len(channel.alerts) == 3

    async def test_a_database_error_fails_the_batch_instead_of_killing_rows(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The database failing says nothing about the row: the batch is claimed again
        # once its lease runs out, and nothing is dead-lettered.
        await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)

        async def database_fails(*_: object, **__: object) -> None:
            raise OperationalError("SELECT 1", {}, ConnectionResetError())

        monkeypatch.setattr(BatchLoader, "_context", database_fails)
        worker = worker_with(state, FakeChannel(), settings)

        with pytest.raises(OperationalError):
            await worker.run_once()

        async with state.db.session() as session:
            statuses = (await session.scalars(select(Delivery.status))).all()
        assert statuses == [DeliveryStatus.SENDING] * 4


class CancelsOnFirstSend(FakeChannel):
    """Sends, but the host cancels the meeting while the first message is at the relay."""

    def __init__(self, cancel: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._cancel: Callable[[], Awaitable[None]] | None = cancel

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        receipt = await super().send(context)
        if self._cancel is not None:
            cancel, self._cancel = self._cancel, None
            await cancel()
        return receipt


@pytest.mark.usefixtures("fake_provider")
class TestChangedWhileTheBatchIsSent:
    async def test_invitations_loaded_before_a_cancellation_do_not_follow_it_out(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = await create(client, host_headers, provider="fake")
        channel = CancelsOnFirstSend(lambda: cancel(client, host_headers, created["id"]))
        worker = worker_with(state, channel, settings)

        await worker.drain()

        # One invitation went out before the cancellation; the rest of that batch was
        # already loaded, yet none of them follows the CANCEL: everyone gets the CANCEL.
        requests = [c for c in channel.sent if c.method == "REQUEST"]
        cancels = {c.recipient.email for c in channel.sent if c.method == "CANCEL"}
        assert len(requests) == 1
        assert cancels == {"dana@example.com", *(i["email"] for i in meeting_body()["invitees"])}
        async with state.db.session() as session:
            superseded = await session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(
                    Delivery.meeting_id == created["id"],
                    Delivery.status == DeliveryStatus.SUPERSEDED,
                    Delivery.method == "REQUEST",
                )
            )
        assert superseded == 3  # the three loaded invitations that did not go out
