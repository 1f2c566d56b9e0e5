"""The attendance watcher: during a meeting, tell the host privately about strangers.

Every `watcher.interval_seconds`, for each meeting that is running now (from five minutes
before its start to `OVERRUN` after its end) on a provider that lists participants, the
participants are compared with the invite list (`attendance.compare_attendance`). Each
unknown participant is reported to the host once, as a private notice through the outbox
(`queue_notice`), with a link to the meeting's page where the host can expel them, lock the
meeting, end it or rotate the link.

"Once" is kept in the `attendance_alerts` table, in the same transaction as the notice: a
restart, a second tick or a second worker process never alerts twice about one person.
The notice names the participant (a display name is what the host sees in the call too)
and never carries a join link or passcode.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from provisioner.audit.service import record_event
from provisioner.db import Database, utcnow
from provisioner.delivery.models import Delivery
from provisioner.delivery.notices import NoticeRefused, queue_notice
from provisioner.meetings.attendance import ParticipantMatch, compare_attendance, meeting_ref
from provisioner.meetings.lifecycle import CHANGEABLE
from provisioner.meetings.models import AttendanceAlert, Meeting
from provisioner.meetings.service import START_SKEW
from provisioner.providers.base import Feature, MeetingProvider, Person
from provisioner.providers.errors import ProviderError
from provisioner.settings import WatcherSettings

log = structlog.get_logger(__name__)

OVERRUN = timedelta(minutes=30)  # meetings run late; keep watching a while after the end
NOTICE_KIND = "watcher.unknown_participant"


@dataclass(frozen=True)
class WatchResult:
    """What one tick did (for logs and tests)."""

    meetings_checked: int
    alerts_queued: int
    provider_failures: int


async def watch_once(
    db: Database,
    providers: Mapping[str, MeetingProvider],
    *,
    public_url: str,
    now: datetime | None = None,
) -> WatchResult:
    """Check every running meeting once; queue one notice per newly seen unknown participant.

    A provider failure for one meeting is logged and skipped: the next tick tries again,
    and one slow provider must not stop the others being watched.
    """
    moment = now or utcnow()
    watched = sorted(
        name for name, provider in providers.items() if Feature.PARTICIPANTS in provider.features
    )
    if not watched:
        return WatchResult(0, 0, 0)
    async with db.session() as session:
        meetings = (
            await session.scalars(
                select(Meeting)
                .options(selectinload(Meeting.invitees))
                .where(
                    Meeting.state.in_(CHANGEABLE),
                    Meeting.provider.in_(watched),
                    Meeting.starts_at <= moment + START_SKEW,
                    Meeting.ends_at >= moment - OVERRUN,
                )
            )
        ).all()
    queued = failures = 0
    for meeting in meetings:
        ref = meeting_ref(meeting)
        if ref is None:
            continue
        try:
            participants = await providers[meeting.provider].list_participants(ref)
        except ProviderError as exc:
            failures += 1
            log.warning(
                "watcher.participants_failed",
                meeting_id=meeting.id,
                provider=meeting.provider,
                error_type=type(exc).__name__,
            )
            continue
        unknown = compare_attendance(meeting, participants, checked_at=moment).unknown
        if unknown:
            queued += await _alert_host(db, meeting, unknown, public_url=public_url)
    return WatchResult(len(meetings), queued, failures)


async def _alert_host(
    db: Database, meeting: Meeting, unknown: list[ParticipantMatch], *, public_url: str
) -> int:
    """Queue a notice for each unknown participant not reported before; returns how many."""
    try:
        async with db.session() as session:
            reported = set(
                (
                    await session.scalars(
                        select(AttendanceAlert.participant_key).where(
                            AttendanceAlert.meeting_id == meeting.id
                        )
                    )
                ).all()
            )
            fresh = {p.key: p for p in unknown if p.key not in reported}
            for key, participant in fresh.items():
                delivery = await _queue(session, meeting, participant, public_url=public_url)
                session.add(
                    AttendanceAlert(
                        id=str(uuid.uuid4()),
                        meeting_id=meeting.id,
                        participant_key=key,
                        participant_name=participant.name[:200],
                        delivery_id=delivery.id,
                    )
                )
                await record_event(
                    session,
                    actor="system",
                    action="meeting.unknown_participant",
                    target_type="meeting",
                    target_id=meeting.id,
                    details={
                        "participant_name": participant.name[:200],
                        "participant_id": participant.participant_id,
                        "why": participant.note,
                        "host_notified": True,
                    },
                )
            await session.flush()
    except IntegrityError:
        # Another watcher reported the same participant first: that alert is the one.
        log.info("watcher.already_reported", meeting_id=meeting.id)
        return 0
    if fresh:
        log.info("watcher.unknown_participants", meeting_id=meeting.id, alerts=len(fresh))
    return len(fresh)


async def _queue(
    session: AsyncSession, meeting: Meeting, participant: ParticipantMatch, *, public_url: str
) -> Delivery:
    """The notice to the host; without the participant's name if the notice guard refuses it.

    A display name is chosen by the participant: one that looks like a link with a token
    (`?jwt=...`) trips `queue_notice`'s secret check, and an intruder must not be able to
    silence the alert by picking such a name.
    """
    host = Person(email=meeting.host_email, name=meeting.host_name)
    link = f"{public_url.rstrip('/')}/meetings/{meeting.id}"
    try:
        return await queue_notice(
            session,
            meeting_id=meeting.id,
            recipient=host,
            kind=NOTICE_KIND,
            subject=f"Someone you did not invite is in {meeting.topic!r}",
            lines=_notice_lines(participant),
            link=link,
        )
    except NoticeRefused:
        return await queue_notice(
            session,
            meeting_id=meeting.id,
            recipient=host,
            kind=NOTICE_KIND,
            subject="Someone you did not invite is in your meeting",
            lines=[
                "Someone who is not on the invite list is in your meeting; their display "
                "name could not be included in this message. Open the meeting page to see "
                "who it is and to remove them, lock or end the meeting, or rotate the link.",
            ],
            link=link,
        )


def _notice_lines(participant: ParticipantMatch) -> list[str]:
    seen_as = f"{participant.name} ({participant.email})" if participant.email else participant.name
    lines = [
        f"{seen_as} is in your meeting but is not on its invite list.",
        f"Why this was flagged: {participant.note or 'not on the invite list'}.",
        "If you do not know them: remove them or lock the meeting from the meeting page "
        "below (or in the meeting window), end the meeting if needed, and rotate the link "
        "so everyone invited gets a new one.",
    ]
    return lines


class AttendanceWatcher:
    """The watcher loop; `provisioner worker` (or `serve` with the embedded worker) runs it
    next to the delivery worker."""

    def __init__(
        self,
        db: Database,
        providers: Mapping[str, MeetingProvider],
        *,
        settings: WatcherSettings,
        public_url: str,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._providers = providers
        self._settings = settings
        self._public_url = public_url
        self._on_queued = on_queued

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a failed tick is logged and the loop goes on."""
        log.info("watcher.started", interval_seconds=self._settings.interval_seconds)
        while not stop.is_set():
            try:
                result = await watch_once(self._db, self._providers, public_url=self._public_url)
            except Exception as exc:  # the loop must survive a dropped connection
                log.error("watcher.tick_failed", error_type=type(exc).__name__)
            else:
                if result.alerts_queued and self._on_queued is not None:
                    self._on_queued()  # the delivery worker sends them now, not next poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.interval_seconds)
        log.info("watcher.stopped")
