"""Private notices: a short message to one person about a meeting, sent through the outbox.

Incident reports, watcher alerts and similar events must reach the host, a manager or
HR/security privately and reliably. Rather than sending inline (and losing the message if
the relay is down or the request rolls back), a notice is a `Delivery` row with role
"notice", queued in the caller's transaction: it goes out only if the event that caused it
is committed, and the worker sends, retries and dead-letters it like any other delivery.

A notice carries words and at most one link back into provisioner (an incident page, a
meeting page); never a join link or passcode. Callers pass only links they built to our own
pages; as a last line of defence the text is checked for the one secret shape that can be
recognised cheaply (a URL carrying a passcode or token query) and refused if present.

The `sequence` of a notice is 0 and it is never superseded by a newer invitation or
cancellation: a notice is about something that happened, which a reschedule does not undo.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.delivery.base import DeliveryReceipt
from provisioner.delivery.models import Delivery
from provisioner.providers.base import Person

NOTICE_ROLE = "notice"
NOTICE_METHOD = "NOTICE"
MAX_LINES = 40
MAX_LINE_CHARS = 2000

# Query parameters that carry a way into a meeting (Zoom `pwd`, Jitsi `jwt`, ...). A notice
# that contains one is a bug in its caller; refusing it beats mailing a key around.
_SECRET_QUERY = re.compile(r"[?&](pwd|passcode|password|jwt|token|tk)=", re.IGNORECASE)


class NoticeRefused(ValueError):
    """The notice would carry something a notice must not (a secret, or nothing at all)."""


@dataclass(frozen=True)
class PrivateNotice:
    """What a channel needs to send one notice to one person."""

    delivery_id: str
    meeting_id: str
    recipient: Person
    kind: str
    subject: str
    lines: tuple[str, ...]
    link: str | None


@runtime_checkable
class NoticeChannel(Protocol):
    """A channel that can carry notices (email does)."""

    async def send_notice(self, notice: PrivateNotice) -> DeliveryReceipt:
        """Send one notice to `notice.recipient` alone."""
        ...


async def queue_notice(
    session: AsyncSession,
    *,
    meeting_id: str,
    recipient: Person,
    kind: str,
    subject: str,
    lines: Sequence[str],
    link: str | None = None,
) -> Delivery:
    """Queue one private email notice to `recipient` in the caller's transaction.

    Args:
        meeting_id: the meeting the notice is about (the outbox row belongs to it).
        recipient: the one person who receives it.
        kind: a short machine label (e.g. "incident.filed", "watcher.unknown"), kept in
            the row and the message headers so notices can be told apart.
        subject: the email subject (one line).
        lines: the body, one paragraph per line; plain text, escaped when rendered.
        link: at most one link back into provisioner (never a join link).

    Raises:
        NoticeRefused: empty subject or body, too long, or text that looks like it
            carries a join secret.
    """
    subject = " ".join(subject.split())
    body = tuple(lines)
    if not subject or not body:
        raise NoticeRefused("a notice needs a subject and at least one line")
    if len(body) > MAX_LINES or any(len(line) > MAX_LINE_CHARS for line in body):
        raise NoticeRefused("a notice is a few short lines, not a document")
    for text in (subject, *body, link or ""):
        if _SECRET_QUERY.search(text):
            raise NoticeRefused("a notice must not carry a join link, passcode or token")
    delivery = Delivery(
        id=str(uuid.uuid4()),
        meeting_id=meeting_id,
        invitee_id=None,
        role=NOTICE_ROLE,
        channel="email",
        recipient_email=recipient.email,
        recipient_name=recipient.name,
        method=NOTICE_METHOD,
        sequence=0,
        notice={"kind": kind[:80], "subject": subject[:200], "lines": list(body), "link": link},
    )
    session.add(delivery)
    await session.flush()
    return delivery


def notice_for(delivery: Delivery) -> PrivateNotice:
    """Rebuild the notice from its outbox row (the worker calls this)."""
    data = delivery.notice or {}
    link = data.get("link")
    return PrivateNotice(
        delivery_id=delivery.id,
        meeting_id=delivery.meeting_id,
        recipient=Person(email=delivery.recipient_email, name=delivery.recipient_name),
        kind=str(data.get("kind", "notice")),
        subject=str(data.get("subject", "")),
        lines=tuple(str(line) for line in data.get("lines", ())),
        link=str(link) if link else None,
    )
