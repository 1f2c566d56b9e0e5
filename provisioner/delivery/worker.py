"""Send outbox deliveries: claim a batch, send each privately, record the outcome.

At-least-once: a delivery is claimed with a lease (`sending` until `lease_until`); a worker
that dies mid-send leaves the lease to expire and another worker claims it again. Claims
use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers on several hosts take
disjoint batches; on SQLite the single writer connection makes the claim atomic. Outcomes
are written only if this worker still holds the claim, so a slow worker whose lease
expired cannot overwrite a newer attempt.

The parts: `batch.py` loads what a claimed batch sends, `sending.py` sends one,
`outcomes.py` records what came of it; this module claims, loops and settles meetings.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.crypto import FieldCipher
from provisioner.db import Database, utcnow
from provisioner.delivery.alerts import ALERT_ROLE
from provisioner.delivery.base import (
    Channel,
    ChannelError,
    DeliveryContext,
    DeliveryReceipt,
)
from provisioner.delivery.batch import BatchLoader, Sendable, still_current
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.notices import NOTICE_ROLE
from provisioner.delivery.outcomes import LogLines, OutcomeRecorder
from provisioner.delivery.sending import send, send_alert
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.observability.metrics import Metrics
from provisioner.settings import WorkerSettings

if TYPE_CHECKING:  # the actions package imports meetings, which the worker must not
    from provisioner.actions.service import HostActionLinks

log = structlog.get_logger(__name__)


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
        self._channels = channels
        self._settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self.metrics: Metrics | None = None  # set by the app (or `worker --metrics-port`)
        self._batch = BatchLoader(
            self.worker_id,
            cipher=cipher,
            settings=settings,
            action_links=action_links,
            count=self._count,
        )
        self._outcomes = OutcomeRecorder(self.worker_id, settings, rand=rand, on_alerts=self.wake)

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
            loaded = await self._batch.load(session, ids)
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

    async def _deliver(self, delivery: Delivery, context: Sendable) -> DeliveryStatus:
        log_ = log.bind(
            delivery_id=delivery.id, meeting_id=delivery.meeting_id, worker_id=self.worker_id
        )
        lease = await self._renew(delivery)
        if lease is _Lease.LOST:
            log_.warning("delivery.claim_lost")
            return DeliveryStatus.SENDING
        if lease is _Lease.OUTDATED:
            # Changed since the batch was loaded (cancelled, moved, rotated): the newer
            # message goes instead, and this one must not follow it out.
            async with self._db.session() as session:
                row = await session.get(Delivery, delivery.id, with_for_update=True)
                if row is not None:
                    await self._batch.retire(
                        session, row, DeliveryStatus.SUPERSEDED, "changed before it was sent"
                    )
            return DeliveryStatus.SUPERSEDED
        receipt: DeliveryReceipt | None
        error: ChannelError | None
        if isinstance(context, DeliveryContext):
            receipt, error, fell_back = await send(self._channels, delivery.channel, context)
        else:
            outcome = await send_alert(self._channels, context)
            receipt, error = (
                (None, outcome) if isinstance(outcome, ChannelError) else (outcome, None)
            )
            fell_back = False
        lines: LogLines = []  # written after the commit: see OutcomeRecorder.record
        async with self._db.session() as session:
            status = await self._outcomes.record(
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

    async def _renew(self, delivery: Delivery) -> _Lease:
        """Renew the lease right before sending, if the row is ours and still current.

        The lease was set for the whole batch; a slow relay could let it lapse for the
        rows at the end. Renewing per row (conditionally) means a row whose lease lapsed
        and was re-claimed elsewhere is not sent twice. And the batch was loaded before
        this send: a cancellation, a reschedule or a rotation committed since then makes
        an invitation outdated, which must not reach anyone after its replacement.
        """
        now = utcnow()
        async with self._db.session() as session:
            renewed = await session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery.id,
                    Delivery.claimed_by == self.worker_id,
                    Delivery.status == DeliveryStatus.SENDING,
                    still_current(),
                )
                .values(lease_until=now + timedelta(seconds=self._settings.lease_seconds))
            )
            if getattr(renewed, "rowcount", 0):
                return _Lease.OURS
            ours = await session.scalar(
                select(Delivery.id).where(
                    Delivery.id == delivery.id,
                    Delivery.claimed_by == self.worker_id,
                    Delivery.status == DeliveryStatus.SENDING,
                )
            )
        return _Lease.OUTDATED if ours is not None else _Lease.LOST

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


class _Lease(Enum):
    OURS = "ours"  # renewed: send it
    LOST = "lost"  # another worker holds the row now
    OUTDATED = "outdated"  # ours, but a newer message replaces it


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
