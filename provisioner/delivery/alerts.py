"""Private alerts when a message could not be delivered (a dead letter).

When the worker gives up on a delivery, the host and IT must know at once: an invitee who
never got their link is either locked out or about to ask for it to be forwarded. The
alert is queued in the outbox in the same transaction that dead-letters the delivery, so it
is sent (and retried) like any other message, by email only, naming who was not reached
and why -- never a join link or passcode. An alert that itself dies raises no further
alert; it is audited and logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.delivery.base import DeliveryReceipt
from provisioner.delivery.models import Delivery
from provisioner.meetings.models import Meeting
from provisioner.providers.base import Person

ALERT_ROLE = "alert"
NOTICE = "NOTICE"


@dataclass(frozen=True)
class DeadLetterAlert:
    """What the host or IT is told about one undeliverable message."""

    delivery_id: str
    meeting_id: str
    topic: str
    start: datetime
    end: datetime
    timezone: str
    recipient: Person
    failed_recipient: Person
    failed_channel: str
    attempts: int
    reason: str


@runtime_checkable
class AlertChannel(Protocol):
    """A channel that can carry alerts (email does)."""

    async def send_alert(self, alert: DeadLetterAlert) -> DeliveryReceipt:
        """Send one alert to `alert.recipient` alone."""
        ...


async def queue_dead_letter_alerts(
    session: AsyncSession, dead: Delivery, meeting: Meeting, *, it_emails: Sequence[str]
) -> list[Delivery]:
    """One alert to the host and one to each IT address, in the caller's transaction.

    The host is not alerted about their own copy (the alert would take the same road);
    IT is.
    """
    if dead.role == ALERT_ROLE:
        return []  # never alert about an alert
    notice = {
        "failed_delivery_id": dead.id,
        "failed_email": dead.recipient_email,
        "failed_name": dead.recipient_name,
        "failed_channel": dead.channel,
        "attempts": dead.attempts,
        "reason": (dead.last_error or "unknown").split(":", 1)[0],
    }
    recipients = [] if dead.role == "host" else [(meeting.host_email, meeting.host_name)]
    recipients += [(email, "IT") for email in it_emails if email != meeting.host_email]
    alerts = [
        Delivery(
            id=str(uuid.uuid4()),
            meeting_id=meeting.id,
            invitee_id=None,
            role=ALERT_ROLE,
            channel="email",
            recipient_email=email,
            recipient_name=name,
            method=NOTICE,
            sequence=meeting.sequence,
            notice=notice,
        )
        for email, name in recipients
    ]
    session.add_all(alerts)
    await session.flush()
    return alerts


def alert_for(delivery: Delivery, meeting: Meeting) -> DeadLetterAlert:
    notice = delivery.notice or {}
    return DeadLetterAlert(
        delivery_id=delivery.id,
        meeting_id=meeting.id,
        topic=meeting.topic,
        start=meeting.starts_at,
        end=meeting.ends_at,
        timezone=meeting.timezone,
        recipient=Person(email=delivery.recipient_email, name=delivery.recipient_name),
        failed_recipient=Person(
            email=str(notice.get("failed_email", "")), name=str(notice.get("failed_name", ""))
        ),
        failed_channel=str(notice.get("failed_channel", "")),
        attempts=int(notice.get("attempts", 0)),
        reason=str(notice.get("reason", "unknown")),
    )
