"""What one send's outcome does to its delivery row: sent, retried later, or dead.

The row changes only if the worker still holds its claim (a slow worker whose lease
lapsed must not overwrite a newer attempt). A failure is retried with full-jitter backoff
until both `max_attempts` and `give_up_after_hours` are spent, so an outage longer than the
backoff schedule delays invitations instead of losing them; a refusal is final at once and
queues the dead-letter alerts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.db import utcnow
from provisioner.delivery.alerts import queue_dead_letter_alerts
from provisioner.delivery.base import ChannelError, ChannelRejected, ChannelRetriable
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.notices import NOTICE_ROLE
from provisioner.meetings.models import Meeting
from provisioner.settings import WorkerSettings

LogLines = list[Callable[[], object]]
"""Log lines kept for after the outcome's commit (see `OutcomeRecorder.record`)."""


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


class OutcomeRecorder:
    """Writes outcomes for one worker; `on_alerts` is told when dead letters queued alerts."""

    def __init__(
        self,
        worker_id: str,
        settings: WorkerSettings,
        *,
        rand: Callable[[], float],
        on_alerts: Callable[[], None],
    ) -> None:
        self._worker_id = worker_id
        self._settings = settings
        self._rand = rand
        self._on_alerts = on_alerts

    async def record(
        self,
        session: AsyncSession,
        delivery: Delivery,
        message_id: str | None,
        error: ChannelError | None,
        log_: structlog.typing.FilteringBoundLogger,
        lines: LogLines,
        *,
        fell_back: bool = False,
    ) -> DeliveryStatus:
        """Store the outcome of one send; its log lines go in `lines`, for after the commit.

        A log sink that blocks (a full pipe) must not hold the row's lock, and a line must
        not claim an outcome that a failed commit then took back. SENDING means the claim
        was lost and nothing was written.
        """
        row = await session.get(Delivery, delivery.id, with_for_update=True)
        if row is None or row.claimed_by != self._worker_id or row.status != DeliveryStatus.SENDING:
            return DeliveryStatus.SENDING
        now = utcnow()
        row.lease_until = None
        if fell_back:
            await self._fell_back(session, row, log_, lines)
        if error is None:
            await self._sent(session, row, message_id, now, log_, lines)
            return DeliveryStatus.SENT
        row.last_error = f"{type(error).__name__}: {error.detail}"[:500]
        if self._gives_up(row, error, now):
            await self._dead(session, row, error, log_, lines)
            return DeliveryStatus.DEAD
        await self._retry_later(session, row, error, now, log_, lines)
        return DeliveryStatus.PENDING

    async def _fell_back(
        self,
        session: AsyncSession,
        row: Delivery,
        log_: structlog.typing.FilteringBoundLogger,
        lines: LogLines,
    ) -> None:
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

    async def _sent(
        self,
        session: AsyncSession,
        row: Delivery,
        message_id: str | None,
        now: datetime,
        log_: structlog.typing.FilteringBoundLogger,
        lines: LogLines,
    ) -> None:
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

    async def _dead(
        self,
        session: AsyncSession,
        row: Delivery,
        error: ChannelError,
        log_: structlog.typing.FilteringBoundLogger,
        lines: LogLines,
    ) -> None:
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
                self._on_alerts()

    async def _retry_later(
        self,
        session: AsyncSession,
        row: Delivery,
        error: ChannelError,
        now: datetime,
        log_: structlog.typing.FilteringBoundLogger,
        lines: LogLines,
    ) -> None:
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

    def _gives_up(self, row: Delivery, error: ChannelError, now: datetime) -> bool:
        """Dead-letter now? A refusal (5xx, unknown user) at once; any other failure -- the
        relay down, a 4xx, a timeout -- only after `max_attempts` tries *and*
        `give_up_after_hours` of trying."""
        if isinstance(error, ChannelRejected):
            return True
        if row.attempts < self._settings.max_attempts:
            return False
        return now - row.created_at >= timedelta(hours=self._settings.give_up_after_hours)
