"""Queue messages for a meeting's people in the caller's transaction (the outbox).

Every change that people must hear about -- a new meeting, a reschedule, a cancellation --
adds one delivery row per recipient carrying the meeting's current SEQUENCE, in the same
transaction as the change itself. A recipient's older deliveries still waiting are
superseded by the new one to that same recipient: nobody should receive an invitation for
times that no longer hold. Only the same recipient's: a later change queues nothing for
someone already taken off the meeting, so it must not swallow their CANCEL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, insert, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.delivery.base import Method, Role
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.meetings.models import Invitee, Meeting
from provisioner.prepared import Prepared


async def queue_deliveries(
    session: AsyncSession,
    meeting: Meeting,
    invitees: Sequence[Invitee],
    *,
    method: Method,
    host_channel: str = "email",
    include_host: bool = True,
    supersede: bool = True,
) -> list[Delivery]:
    """One delivery to the host (unless `include_host` is false) and one to each invitee,
    at `meeting.sequence`, superseding each of these recipients' older deliveries still
    waiting. Alerts and notices already queued are never superseded. `supersede=False`
    skips looking for older deliveries: for a meeting stored just now, which has none."""
    if supersede:
        await _supersede(
            session, meeting, [invitee.id for invitee in invitees], include_host=include_host
        )
    deliveries: list[Delivery] = []
    if include_host:
        deliveries.append(
            Delivery(
                id=str(uuid.uuid4()),
                meeting_id=meeting.id,
                invitee_id=None,
                role=Role.HOST,
                channel=host_channel,
                recipient_email=meeting.host_email,
                recipient_name=meeting.host_name,
                method=method,
                sequence=meeting.sequence,
            )
        )
    deliveries += [
        Delivery(
            id=str(uuid.uuid4()),
            meeting_id=meeting.id,
            invitee_id=invitee.id,
            role=Role.INVITEE,
            channel=invitee.channel,
            recipient_email=invitee.email,
            recipient_name=invitee.name,
            method=method,
            sequence=meeting.sequence,
        )
        for invitee in invitees
    ]
    session.add_all(deliveries)
    await session.flush()
    return deliveries


def queue_new_meeting_deliveries(
    session: AsyncSession,
    *,
    meeting_id: str,
    host_email: str,
    host_name: str,
    sequence: int,
    invitees: Sequence[Invitee],
    method: Method,
) -> dict[str | None, str]:
    """`queue_deliveries` for a meeting stored just now (nothing to supersede), whose
    invitee rows are queued before these: no ORM objects or flush, and the rows are
    written when the transaction commits (`Prepared.defer`: nothing reads them before).

    Returns the new deliveries' status by invitee id (`None` for the host's).
    """
    recipients: list[tuple[str | None, str, str, str, str]] = [
        (None, Role.HOST, "email", host_email, host_name)
    ]
    recipients += [
        (invitee.id, Role.INVITEE, invitee.channel, invitee.email, invitee.name)
        for invitee in invitees
    ]
    rows = [
        {
            "id": str(uuid.uuid4()),
            "meeting_id": meeting_id,
            "invitee_id": invitee_id,
            "role": role,
            "channel": channel,
            "recipient_email": email,
            "recipient_name": name,
            "method": method,
            "sequence": sequence,
            "status": DeliveryStatus.PENDING,
        }
        for invitee_id, role, channel, email, name in recipients
    ]
    _INSERT_DELIVERY.defer(session, rows)
    status: dict[str | None, str] = {None: DeliveryStatus.PENDING}
    status.update((invitee.id, DeliveryStatus.PENDING) for invitee in invitees)
    return status


_INSERT_DELIVERY = Prepared(insert(Delivery.__table__))  # type: ignore[arg-type]


async def _supersede(
    session: AsyncSession, meeting: Meeting, invitee_ids: Sequence[str], *, include_host: bool
) -> None:
    """The recipients' older deliveries still waiting are superseded by the ones being
    queued; a recipient is the invitee row (`invitee_id`), or the host (no invitee).

    Nobody else's: a removed invitee's CANCEL queued by an earlier change stays due, since
    no later change sends them anything that would replace it.
    """
    recipients: list[ColumnElement[bool]] = []
    if invitee_ids:
        recipients.append(Delivery.invitee_id.in_(invitee_ids))
    if include_host:
        recipients.append(Delivery.invitee_id.is_(None))
    if not recipients:
        return
    await session.execute(
        update(Delivery)
        .where(
            Delivery.meeting_id == meeting.id,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.sequence < meeting.sequence,
            # Only messages to people: alerts and notices (no invitee either) are
            # reports of what happened.
            Delivery.role.in_((Role.HOST, Role.INVITEE)),
            or_(*recipients),
        )
        .values(status=DeliveryStatus.SUPERSEDED)
    )
