"""Private notices through the outbox, sent by the worker to a real SMTP server."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from provisioner.audit.models import AuditEvent
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.notices import NOTICE_ROLE, NoticeRefused, queue_notice
from provisioner.providers.base import Person
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.incidents.conftest import notices
from tests.support.meeting_fixtures import created_meeting, text_of
from tests.support.smtp import SmtpServer

LEE = Person(email="lee@example.com", name="Lee")


async def test_a_notice_reaches_its_one_recipient_without_join_secrets(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
    smtp_server: SmtpServer,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    join = meeting["host_join"]
    async with state.db.session() as session:
        delivery = await queue_notice(
            session,
            meeting_id=meeting["id"],
            recipient=LEE,
            kind="watcher.unknown",
            subject="Someone uninvited is in your meeting",
            lines=["Mallory joined at 10:05.", "Remove them or end the meeting."],
            link="https://provisioner.example.com/meetings/" + meeting["id"],
        )
        delivery_id = delivery.id

    await state.worker.drain()

    message = notices(smtp_server)["lee@example.com"]
    assert message["Subject"] == "Someone uninvited is in your meeting"
    assert message["X-Provisioner-Notice"] == "watcher.unknown"
    body = text_of(message)
    assert "Mallory joined at 10:05." in body
    assert "https://provisioner.example.com/meetings/" + meeting["id"] in body
    raw = message.as_string()
    assert join["url"] not in raw and join["passcode"] not in raw
    assert not list(message.iter_attachments())  # no .ics: a notice is not an invitation
    async with state.db.session() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None and row.status == DeliveryStatus.SENT and row.role == NOTICE_ROLE
        sent = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "delivery.sent", AuditEvent.target_id == delivery_id
            )
        )
    assert sent is not None


async def test_a_notice_outlives_a_reschedule(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
    smtp_server: SmtpServer,
) -> None:
    """A newer invitation supersedes older invitations, never a notice about an event."""
    meeting = await created_meeting(client, host_headers, provider="fake")
    async with state.db.session() as session:
        await queue_notice(
            session,
            meeting_id=meeting["id"],
            recipient=LEE,
            kind="incident.filed",
            subject="Incident reported",
            lines=["An incident was reported."],
        )
    changed = await client.patch(
        f"/api/v1/meetings/{meeting['id']}",
        json={"topic": "Quarterly planning (moved)"},
        headers=host_headers,
    )
    assert changed.status_code == 200, changed.text

    await state.worker.drain()

    assert "lee@example.com" in notices(smtp_server)


@pytest.mark.parametrize(
    "lines",
    [
        ["Join here: https://zoom.us/j/123?pwd=abcdef"],
        ["https://meet.example.com/room?jwt=eyJabc"],
        [],
    ],
)
async def test_a_notice_that_would_carry_a_secret_or_nothing_is_refused(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
    lines: list[str],
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    async with state.db.session() as session:
        with pytest.raises(NoticeRefused):
            await queue_notice(
                session,
                meeting_id=meeting["id"],
                recipient=LEE,
                kind="test",
                subject="Subject",
                lines=lines,
            )
