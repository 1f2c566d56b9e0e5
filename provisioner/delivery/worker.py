"""Send outbox deliveries: claim a batch, send each privately, record the outcome.

At-least-once: a delivery is claimed with a lease (`sending` until `lease_until`); a worker
that dies mid-send leaves the lease to expire and another worker claims it again. Claims
use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers on several hosts take
disjoint batches; on SQLite the single writer connection makes the claim atomic. Outcomes
are written only if this worker still holds the claim, so a slow worker whose lease
expired cannot overwrite a newer attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.crypto import CipherError, FieldCipher
from provisioner.db import Database, utcnow
from provisioner.delivery.alerts import (
    ALERT_ROLE,
    AlertChannel,
    DeadLetterAlert,
    alert_for,
    queue_dead_letter_alerts,
)
from provisioner.delivery.base import (
    Channel,
    ChannelError,
    ChannelRejected,
    ChannelRetriable,
    DeliveryContext,
    DeliveryReceipt,
    HostAction,
    Method,
    Role,
)
from provisioner.delivery.chat_config import ChatUserNotFound
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.notices import NOTICE_ROLE, NoticeChannel, PrivateNotice, notice_for
from provisioner.meetings.codec import settings_from_json
from provisioner.meetings.joins import open_join
from provisioner.meetings.models import Invitee, Meeting, MeetingState
from provisioner.observability.metrics import Metrics
from provisioner.policy.model import Control
from provisioner.providers.base import Person
from provisioner.settings import WorkerSettings

if TYPE_CHECKING:  # the actions package imports meetings, which the worker must not
    from provisioner.actions.service import HostActionLinks

log = structlog.get_logger(__name__)


def backoff_seconds(
    attempt: int,
    settings: WorkerSettings,
    *,
    rand: Callable[[], float] = random.random,  # noqa: S311 (jitter only)
    retry_after: float | None = None,
) -> float:
    """Full-jitter exponential backoff, but never sooner than the server asked."""
    ceiling = min(
        settings.backoff_max_seconds, settings.backoff_base_seconds * 2.0 ** max(0, attempt - 1)
    )
    delay = ceiling * rand()
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.backoff_max_seconds))
    return delay


@dataclass(frozen=True)
class BatchResult:
    claimed: int
    sent: int
    retried: int
    dead: int


class DeliveryWorker:
    """One worker loop; run several (processes or hosts) against the same database."""

    def __init__(
        self,
        db: Database,
        channels: Mapping[str, Channel],
        *,
        cipher: FieldCipher,
        settings: WorkerSettings,
        worker_id: str | None = None,
        rand: Callable[[], float] = random.random,
        action_links: HostActionLinks | None = None,
    ) -> None:  # noqa: S311
        self._db = db
        # Mints the host's emergency links; None leaves them out (no public URL known).
        self._action_links = action_links
        self._channels = channels
        self._cipher = cipher
        self._settings = settings
        self._rand = rand
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self.metrics: Metrics | None = None  # set by the app (or `worker --metrics-port`)

    def wake(self) -> None:
        """Called after a commit that queued deliveries, so they go out without waiting."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; finishes the batch in hand before returning."""
        log.info("worker.started", worker_id=self.worker_id)
        while not stop.is_set():
            try:
                result = await self.run_once()
            except Exception as exc:  # the loop must survive a dropped connection
                log.error("worker.batch_failed", error_type=type(exc).__name__)
                result = BatchResult(0, 0, 0, 0)
            if result.claimed:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _first_of(stop, self._wake), timeout=self._settings.poll_interval_seconds
                )
        log.info("worker.stopped", worker_id=self.worker_id)

    async def run_once(self) -> BatchResult:
        """Claim one batch of due deliveries, send each, then settle their meetings.

        The batch is loaded in one transaction and each outcome recorded in its own, so a
        crash loses at most the outcome of the message in flight (sent again later:
        at-least-once), never a delivery.
        """
        ids = await self._claim()
        if not ids:
            return BatchResult(0, 0, 0, 0)
        async with self._db.session() as session:
            loaded = await self._load_batch(session, ids)
        sent = retried = dead = 0
        settled: set[str] = set()
        for delivery, context in loaded:
            outcome = await self._deliver(delivery, context)
            sent += outcome == DeliveryStatus.SENT
            retried += outcome == DeliveryStatus.PENDING
            dead += outcome == DeliveryStatus.DEAD
            if outcome == DeliveryStatus.SENT:
                settled.add(delivery.meeting_id)
        if settled:
            async with self._db.session() as session:
                for meeting_id in sorted(settled):
                    await self._maybe_delivered(session, meeting_id)
        return BatchResult(len(ids), sent, retried, dead)

    async def drain(self, *, max_batches: int = 1000) -> int:
        """Send everything due now (the demo and tests use this); returns how many were sent."""
        total = 0
        for _ in range(max_batches):
            result = await self.run_once()
            total += result.sent
            if not result.claimed:
                break
        return total

    async def _claim(self) -> list[str]:
        now = utcnow()
        async with self._db.session() as session:
            due = (
                select(Delivery.id)
                .where(
                    or_(
                        and_(
                            Delivery.status == DeliveryStatus.PENDING,
                            Delivery.next_attempt_at <= now,
                        ),
                        and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now),
                    )
                )
                .order_by(Delivery.next_attempt_at)
                .limit(self._settings.batch_size)
                .with_for_update(skip_locked=True)
            )
            ids = list((await session.scalars(due)).all())
            if not ids:
                return []
            claimed = await session.scalars(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .where(or_(Delivery.status == DeliveryStatus.PENDING, Delivery.lease_until < now))
                .values(
                    status=DeliveryStatus.SENDING,
                    claimed_by=self.worker_id,
                    lease_until=now + timedelta(seconds=self._settings.lease_seconds),
                    attempts=Delivery.attempts + 1,
                )
                .returning(Delivery.id)
            )
            return list(claimed.all())

    async def _deliver(
        self, delivery: Delivery, context: DeliveryContext | DeadLetterAlert | PrivateNotice
    ) -> DeliveryStatus:
        log_ = log.bind(
            delivery_id=delivery.id, meeting_id=delivery.meeting_id, worker_id=self.worker_id
        )
        if not await self._still_ours(delivery):
            log_.warning("delivery.claim_lost")
            return DeliveryStatus.SENDING
        receipt: DeliveryReceipt | None
        error: ChannelError | None
        if isinstance(context, DeadLetterAlert | PrivateNotice):
            outcome = await self._send_alert(context)
            receipt, error, fell_back = (
                (None, outcome, False)
                if isinstance(outcome, ChannelError)
                else (outcome, None, False)
            )
        else:
            receipt, error, fell_back = await self._send(delivery.channel, context)
        # The outcome's log lines are written after its commit: a log sink that blocks (a
        # full pipe) must not hold the row's lock, and a line must not claim an outcome
        # that a failed commit then took back.
        lines: list[Callable[[], object]] = []
        async with self._db.session() as session:
            status = await self._record(
                session,
                delivery,
                receipt.message_id if receipt else None,
                error,
                log_,
                lines,
                fell_back=fell_back,
            )
        for line in lines:
            line()
        self._count(delivery.channel, status, fell_back=fell_back)
        return status

    def _count(self, channel: str, status: DeliveryStatus, *, fell_back: bool = False) -> None:
        """Outcomes for /metrics: sent, fell_back (sent by email instead), retried, dead."""
        outcome = {
            DeliveryStatus.SENT: "fell_back" if fell_back else "sent",
            DeliveryStatus.PENDING: "retried",
            DeliveryStatus.DEAD: "dead",
            DeliveryStatus.SUPERSEDED: "superseded",
        }.get(status)
        if self.metrics is not None and outcome is not None:
            self.metrics.delivery_settled(channel, outcome)

    async def _send_alert(
        self, alert: DeadLetterAlert | PrivateNotice
    ) -> DeliveryReceipt | ChannelError:
        """Alerts and notices go by email only: they must reach a person, not a chat bot."""
        email = self._channels.get("email")
        try:
            if isinstance(alert, PrivateNotice):
                if not isinstance(email, NoticeChannel):
                    return ChannelRejected("no email channel is configured to carry notices")
                return await email.send_notice(alert)
            if not isinstance(email, AlertChannel):
                return ChannelRejected("no email channel is configured to carry alerts")
            return await email.send_alert(alert)
        except ChannelError as exc:
            return exc
        except Exception as exc:  # an unexpected bug must not lose the alert
            return ChannelRetriable(f"unexpected {type(exc).__name__}")

    async def _send(
        self, channel_name: str, context: DeliveryContext
    ) -> tuple[DeliveryReceipt | None, ChannelError | None, bool]:
        """Send through the chosen channel; a chat user we cannot find gets email instead.

        Returns the receipt or the error, and whether the email fallback was used.
        """
        channel = self._channels.get(channel_name)
        try:
            if channel is None:
                raise ChannelRejected(f"no channel {channel_name!r} is configured")
            return await channel.send(context), None, False
        except ChatUserNotFound as exc:
            email = self._channels.get("email")
            if channel_name == "email" or email is None:
                return None, exc, False
            try:
                return await email.send(context), None, True
            except ChannelError as fallback_error:
                return None, fallback_error, True
            except Exception as bug:  # an unexpected bug must not lose the delivery
                return None, ChannelRetriable(f"unexpected {type(bug).__name__}"), True
        except ChannelError as exc:
            return None, exc, False
        except Exception as exc:  # an unexpected bug must not lose the delivery
            return None, ChannelRetriable(f"unexpected {type(exc).__name__}"), False

    async def _load_batch(
        self, session: AsyncSession, ids: list[str]
    ) -> list[tuple[Delivery, DeliveryContext | DeadLetterAlert | PrivateNotice]]:
        """Everything the claimed deliveries need, in three queries rather than three each."""
        deliveries = (
            await session.scalars(
                select(Delivery).where(
                    Delivery.id.in_(ids),
                    Delivery.status == DeliveryStatus.SENDING,
                    Delivery.claimed_by == self.worker_id,
                )
            )
        ).all()
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
        loaded: list[tuple[Delivery, DeliveryContext | DeadLetterAlert | PrivateNotice]] = []
        for delivery in sorted(deliveries, key=lambda d: ids.index(d.id)):
            meeting = meetings.get(delivery.meeting_id)
            invitee = invitees.get(delivery.invitee_id) if delivery.invitee_id else None
            if meeting is not None and delivery.role == ALERT_ROLE:
                loaded.append((delivery, alert_for(delivery, meeting)))
                continue
            if meeting is not None and delivery.role == NOTICE_ROLE:
                # A notice reports what happened: a later reschedule or the meeting's end
                # does not make it outdated.
                loaded.append((delivery, notice_for(delivery)))
                continue
            if meeting is None or (delivery.role != Role.HOST and invitee is None):
                await self._retire(
                    session,
                    delivery,
                    DeliveryStatus.SUPERSEDED,
                    "the meeting or invitee no longer exists",
                )
                continue
            if _outdated(delivery, meeting):
                await self._retire(
                    session,
                    delivery,
                    DeliveryStatus.SUPERSEDED,
                    f"meeting is {meeting.state} at sequence {meeting.sequence}",
                )
                continue
            try:
                context = await self._context(session, delivery, meeting, invitee)
            except (CipherError, ValueError, KeyError) as exc:
                # One unreadable row (a data key gone, a rekey that missed it) must not
                # hold its whole batch hostage: it dies alone, and the host and IT hear.
                await self._retire(
                    session, delivery, DeliveryStatus.DEAD, f"unreadable row: {type(exc).__name__}"
                )
                await queue_dead_letter_alerts(
                    session, delivery, meeting, it_emails=self._settings.alert_emails
                )
                continue
            if context is None:
                await self._retire(
                    session,
                    delivery,
                    DeliveryStatus.DEAD,
                    "no join details were stored for this recipient",
                )
                continue
            loaded.append((delivery, context))
        return loaded

    async def _retire(
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

    async def _still_ours(self, delivery: Delivery) -> bool:
        """Renew the lease right before sending; False if another worker took the row.

        The lease was set for the whole batch; a slow relay could let it lapse for the
        rows at the end. Renewing per row (conditionally) means a row whose lease lapsed
        and was re-claimed elsewhere is not sent twice.
        """
        now = utcnow()
        async with self._db.session() as session:
            renewed = await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery.id,
                    Delivery.claimed_by == self.worker_id,
                    Delivery.status == DeliveryStatus.SENDING,
                )
                .values(lease_until=now + timedelta(seconds=self._settings.lease_seconds))
            )
        return bool(getattr(renewed, "rowcount", 0))

    async def _context(
        self,
        session: AsyncSession,
        delivery: Delivery,
        meeting: Meeting,
        invitee: Invitee | None,
    ) -> DeliveryContext | None:
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
        return DeliveryContext(
            delivery_id=delivery.id,
            meeting_id=meeting.id,
            uid=meeting.ics_uid,
            sequence=delivery.sequence,
            method=Method(delivery.method),
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
        )

    async def _record(
        self,
        session: AsyncSession,
        delivery: Delivery,
        message_id: str | None,
        error: ChannelError | None,
        log_: structlog.typing.FilteringBoundLogger,
        lines: list[Callable[[], object]],
        *,
        fell_back: bool = False,
    ) -> DeliveryStatus:
        """Store the outcome of one send; its log lines go in `lines`, for after the commit."""
        row = await session.get(Delivery, delivery.id, with_for_update=True)
        if row is None or row.claimed_by != self.worker_id or row.status != DeliveryStatus.SENDING:
            return DeliveryStatus.SENDING
        now = utcnow()
        row.lease_until = None
        if fell_back:
            # The chat user was not found: the message went (or will go) by email, and the
            # record says so rather than pretending the chat DM happened.
            await record_event(
                session,
                actor="system",
                action="delivery.fell_back",
                target_type="delivery",
                target_id=row.id,
                details={
                    "meeting_id": row.meeting_id,
                    "from": row.channel,
                    "to": "email",
                    "reason": "chat-user-not-found",
                },
            )
            lines.append(
                partial(log_.info, "delivery.fell_back", channel=row.channel, fallback="email")
            )
            row.channel = "email"
        if error is None:
            row.status, row.sent_at, row.message_id, row.last_error = (
                DeliveryStatus.SENT,
                now,
                message_id,
                None,
            )
            await record_event(
                session,
                actor="system",
                action="delivery.sent",
                target_type="delivery",
                target_id=row.id,
                details={
                    "meeting_id": row.meeting_id,
                    "role": row.role,
                    "channel": row.channel,
                    "attempts": row.attempts,
                },
            )
            lines.append(partial(log_.info, "delivery.sent", attempts=row.attempts))
            return DeliveryStatus.SENT
        row.last_error = f"{type(error).__name__}: {error.detail}"[:500]
        if self._gives_up(row, error, now):
            row.status = DeliveryStatus.DEAD
            await record_event(
                session,
                actor="system",
                action="delivery.dead_lettered",
                target_type="delivery",
                target_id=row.id,
                details={
                    "meeting_id": row.meeting_id,
                    "role": row.role,
                    "attempts": row.attempts,
                    "error": type(error).__name__,
                },
            )
            lines.append(
                partial(
                    log_.error,
                    "delivery.dead_lettered",
                    attempts=row.attempts,
                    error_type=type(error).__name__,
                )
            )
            meeting = await session.get(Meeting, row.meeting_id)
            # A dead notice is audited and logged like a dead alert; the dead-letter alert
            # speaks of a missed invitation, which would mislead about a notice.
            if meeting is not None and row.role != NOTICE_ROLE:
                alerts = await queue_dead_letter_alerts(
                    session, row, meeting, it_emails=self._settings.alert_emails
                )
                if alerts:
                    self.wake()
            return DeliveryStatus.DEAD
        retry_after = error.retry_after if isinstance(error, ChannelRetriable) else None
        delay = backoff_seconds(
            row.attempts, self._settings, rand=self._rand, retry_after=retry_after
        )
        row.status = DeliveryStatus.PENDING
        row.next_attempt_at = now + timedelta(seconds=delay)
        await record_event(
            session,
            actor="system",
            action="delivery.retry_scheduled",
            target_type="delivery",
            target_id=row.id,
            details={
                "meeting_id": row.meeting_id,
                "attempts": row.attempts,
                "delay_seconds": round(delay, 1),
                "error": type(error).__name__,
            },
        )
        lines.append(
            partial(
                log_.warning,
                "delivery.retry_scheduled",
                attempts=row.attempts,
                delay_seconds=round(delay, 1),
                error_type=type(error).__name__,
            )
        )
        return DeliveryStatus.PENDING

    def _gives_up(self, row: Delivery, error: ChannelError, now: datetime) -> bool:
        """Dead-letter now? A refusal (5xx, unknown user) at once; any other failure -- the
        relay down, a 4xx, a timeout -- only after `max_attempts` tries *and*
        `give_up_after_hours` of trying, so an outage longer than the backoff schedule
        delays invitations instead of losing them."""
        if isinstance(error, ChannelRejected):
            return True
        if row.attempts < self._settings.max_attempts:
            return False
        return now - row.created_at >= timedelta(hours=self._settings.give_up_after_hours)

    async def _maybe_delivered(self, session: AsyncSession, meeting_id: str) -> None:
        await session.flush()
        unsent = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.meeting_id == meeting_id,
                Delivery.role.notin_((ALERT_ROLE, NOTICE_ROLE)),
                Delivery.status.in_(
                    (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DEAD)
                ),
            )
        )
        meeting = await session.get(Meeting, meeting_id)
        if (
            unsent == 0
            and meeting is not None
            and meeting.state in (MeetingState.VERIFIED, MeetingState.DELIVERING)
        ):
            meeting.state = MeetingState.DELIVERED
            await record_event(
                session,
                actor="system",
                action="meeting.delivered",
                target_type="meeting",
                target_id=meeting_id,
                details={},
            )


def _outdated(delivery: Delivery, meeting: Meeting) -> bool:
    """An invitation older than the meeting's latest change, or for a meeting that is over,
    must not go out: a cancelled meeting's link would reach people after its CANCEL."""
    if delivery.sequence < meeting.sequence:
        return True
    return delivery.method == Method.REQUEST and meeting.state in (
        MeetingState.CANCELLED,
        MeetingState.FAILED,
        MeetingState.ENDED,
    )


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
