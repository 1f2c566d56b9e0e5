"""Turn a worker's claimed delivery ids into what each send needs, or retire the row.

Everything is read in three queries for the whole batch, not three per delivery. A row
that must not go out (its meeting or invitee gone, the message outdated by a later one to
the same recipient, an invitation to a meeting that is over: `still_current`, which the
worker asks again right before each send) is superseded; one that
cannot (its join details missing, anything in it unreadable) dies alone, with the
dead-letter alerts queued, so it never holds its batch hostage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from provisioner.audit.service import record_event
from provisioner.crypto import FieldCipher
from provisioner.db import utcnow
from provisioner.delivery.alerts import (
    ALERT_ROLE,
    DeadLetterAlert,
    alert_for,
    queue_dead_letter_alerts,
)
from provisioner.delivery.base import DeliveryContext, HostAction, Method, Role
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.notices import NOTICE_ROLE, PrivateNotice, notice_for
from provisioner.meetings.codec import settings_from_json
from provisioner.meetings.joins import open_join
from provisioner.meetings.models import Invitee, Meeting, MeetingState
from provisioner.policy.model import Control
from provisioner.providers.base import Person
from provisioner.settings import WorkerSettings

if TYPE_CHECKING:  # the actions package imports meetings, which the worker must not
    from provisioner.actions.service import HostActionLinks

log = structlog.get_logger(__name__)

Sendable = DeliveryContext | DeadLetterAlert | PrivateNotice


class BatchLoader:
    """Loads one worker's claimed rows; `count` is told of every row it retires."""

    def __init__(
        self,
        worker_id: str,
        *,
        cipher: FieldCipher,
        settings: WorkerSettings,
        action_links: HostActionLinks | None,
        count: Callable[[str, DeliveryStatus], None],
    ) -> None:
        self._worker_id = worker_id
        self._cipher = cipher
        self._settings = settings
        # Mints the host's emergency links; None leaves them out (no public URL known).
        self._action_links = action_links
        self._count = count

    async def load(self, session: AsyncSession, ids: list[str]) -> list[tuple[Delivery, Sendable]]:
        """The claimed rows still ours, in claim order, each with what its send needs."""
        rows = await session.execute(
            select(Delivery, still_current()).where(
                Delivery.id.in_(ids),
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.claimed_by == self._worker_id,
            )
        )
        current = {delivery: bool(is_current) for delivery, is_current in rows}
        deliveries = list(current)
        meetings = {
            m.id: m
            for m in await session.scalars(
                select(Meeting).where(Meeting.id.in_({d.meeting_id for d in deliveries}))
            )
        }
        invitee_ids = {d.invitee_id for d in deliveries if d.invitee_id is not None}
        invitees = {
            i.id: i
            for i in await session.scalars(select(Invitee).where(Invitee.id.in_(invitee_ids)))
        }
        loaded: list[tuple[Delivery, Sendable]] = []
        for delivery in sorted(deliveries, key=lambda d: ids.index(d.id)):
            meeting = meetings.get(delivery.meeting_id)
            invitee = invitees.get(delivery.invitee_id) if delivery.invitee_id else None
            try:
                sendable = await self._sendable(
                    session, delivery, meeting, invitee, current=current[delivery]
                )
            except SQLAlchemyError:
                # The database failed, not the row: the session is no longer usable, and
                # the whole batch is claimed again once its lease runs out.
                raise
            except Exception as exc:
                # One unreadable row (a data key gone, a rekey that missed it, a corrupt
                # column) must not hold its whole batch hostage: it dies alone, and the
                # host and IT hear. Only the exception's type is kept: its message may
                # quote the row.
                await self.retire(
                    session, delivery, DeliveryStatus.DEAD, f"unreadable row: {type(exc).__name__}"
                )
                # As for a dead send (outcomes.py): the dead-letter alert speaks of a
                # missed invitation, which would mislead about a notice.
                if meeting is not None and delivery.role != NOTICE_ROLE:
                    await queue_dead_letter_alerts(
                        session, delivery, meeting, it_emails=self._settings.alert_emails
                    )
                continue
            if sendable is not None:
                loaded.append((delivery, sendable))
        return loaded

    async def _sendable(
        self,
        session: AsyncSession,
        delivery: Delivery,
        meeting: Meeting | None,
        invitee: Invitee | None,
        *,
        current: bool,
    ) -> Sendable | None:
        """What `delivery` sends; None when it was retired instead. `current` is what
        `still_current` said of the row when it was loaded.

        Raises:
            Whatever reading the row raised (it is then retired by the caller).
        """
        if meeting is not None and delivery.role == ALERT_ROLE:
            return alert_for(delivery, meeting)
        if meeting is not None and delivery.role == NOTICE_ROLE:
            # A notice reports what happened: a later reschedule or the meeting's end
            # does not make it outdated.
            return notice_for(delivery)
        if meeting is None or (delivery.role != Role.HOST and invitee is None):
            reason = "the meeting or invitee no longer exists"
            await self.retire(session, delivery, DeliveryStatus.SUPERSEDED, reason)
            return None
        if not current:
            reason = (
                f"outdated: a newer message to this recipient, or the meeting is over "
                f"(it is {meeting.state} at sequence {meeting.sequence})"
            )
            await self.retire(session, delivery, DeliveryStatus.SUPERSEDED, reason)
            return None
        context = await self._context(session, delivery, meeting, invitee)
        if context is None:
            reason = "no join details were stored for this recipient"
            await self.retire(session, delivery, DeliveryStatus.DEAD, reason)
            return None
        return context

    async def retire(
        self, session: AsyncSession, delivery: Delivery, status: DeliveryStatus, reason: str
    ) -> None:
        """End a delivery that cannot or must not be sent, so it is never claimed again."""
        delivery.status = status
        delivery.lease_until = None
        delivery.last_error = reason[:500]
        await record_event(
            session,
            actor="system",
            action="delivery.dead_lettered"
            if status == DeliveryStatus.DEAD
            else "delivery.superseded",
            target_type="delivery",
            target_id=delivery.id,
            details={"meeting_id": delivery.meeting_id, "reason": reason},
        )
        log.warning("delivery.retired", delivery_id=delivery.id, status=str(status), reason=reason)
        self._count(delivery.channel, status)

    async def _context(
        self,
        session: AsyncSession,
        delivery: Delivery,
        meeting: Meeting,
        invitee: Invitee | None,
    ) -> DeliveryContext | None:
        """The invitation's content with the recipient's own join details, opened here."""
        if invitee is None:
            sealed, table, row_id, personal = meeting.host_join_secret, "meetings", meeting.id, True
        else:
            sealed, table, row_id = invitee.join_secret, "invitees", invitee.id
            personal = invitee.personal_link
        if sealed is None:
            return None
        actions: tuple[HostAction, ...] = ()
        if (
            self._action_links is not None
            and invitee is None
            and delivery.role == Role.HOST
            and delivery.method == Method.REQUEST
        ):
            actions = await self._action_links.for_delivery(
                session, meeting=meeting, delivery_id=delivery.id, now=utcnow()
            )
        if meeting.state == MeetingState.VERIFIED:
            meeting.state = MeetingState.DELIVERING
            await record_event(
                session,
                actor="system",
                action="meeting.delivering",
                target_type="meeting",
                target_id=meeting.id,
                details={},
            )
        method = Method(delivery.method)
        return DeliveryContext(
            delivery_id=delivery.id,
            meeting_id=meeting.id,
            uid=meeting.ics_uid,
            sequence=delivery.sequence,
            method=method,
            topic=meeting.topic,
            start=meeting.starts_at,
            end=meeting.ends_at,
            timezone=meeting.timezone,
            provider=meeting.provider,
            organizer=Person(email=meeting.host_email, name=meeting.host_name),
            recipient=Person(email=delivery.recipient_email, name=delivery.recipient_name),
            role=Role(delivery.role),
            join=open_join(self._cipher, sealed, table=table, row_id=row_id),
            personal=personal,
            settings=settings_from_json(meeting.settings),
            not_enforced=frozenset(Control(c) for c in meeting.not_enforced),
            actions=actions,
            uninvited=_uninvited(method, meeting, invitee),
        )


# Meetings that will not take place (any more): their link must not go out again.
OVER = (MeetingState.CANCELLED, MeetingState.FAILED, MeetingState.ENDED, MeetingState.ROTATED)


def still_current() -> ColumnElement[bool]:
    """Whether a delivery row's message may still go out, as SQL about the row.

    Not if a newer message to the same recipient is queued (whatever became of it), nor
    an invitation to a meeting that is over: a cancelled meeting's link would reach people
    after its CANCEL, a rotated one's after its replacement. Newer only for the same
    recipient (an invitee, or the host: no invitee): a change after someone was taken off
    queues nothing for them, and their CANCEL must still reach them. Alerts and notices
    report what happened and are always current. One rule for both places it is asked:
    when a batch is loaded, and again right before each send (worker.py).
    """
    newer = aliased(Delivery)
    superseded = exists().where(
        newer.meeting_id == Delivery.meeting_id,
        newer.role.in_((Role.HOST, Role.INVITEE)),
        or_(
            newer.invitee_id == Delivery.invitee_id,
            and_(newer.invitee_id.is_(None), Delivery.invitee_id.is_(None)),
        ),
        newer.sequence > Delivery.sequence,
    )
    over = exists().where(Meeting.id == Delivery.meeting_id, Meeting.state.in_(OVER))
    return or_(
        Delivery.role.notin_((Role.HOST, Role.INVITEE)),
        and_(~superseded, or_(Delivery.method != Method.REQUEST, ~over)),
    )


def _uninvited(method: Method, meeting: Meeting, invitee: Invitee | None) -> bool:
    """A CANCEL to someone taken off a meeting that goes on (RFC 5546 3.2.5): it withdraws
    their invitation and must not read, or tell their calendar, that the meeting was
    cancelled. Once the meeting itself is cancelled (or failed), that is the news."""
    return (
        method is Method.CANCEL
        and invitee is not None
        and invitee.removed_at is not None
        and meeting.state not in (MeetingState.CANCELLED, MeetingState.FAILED)
    )
