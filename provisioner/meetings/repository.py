"""The host's reads: which meetings are theirs, one of them, a page of them.

Someone else's meeting is simply not found, never "forbidden", so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from provisioner.auth.principal import Principal
from provisioner.delivery.models import Delivery
from provisioner.meetings.errors import MeetingNotFound
from provisioner.meetings.models import Invitee, Meeting


def host_subjects(host: Principal) -> tuple[str, ...]:
    """The `host_subject` values that are this host's.

    A meeting an integration created on someone's behalf is stored under
    `email:<address>` (the integration knows the employee's email, not their `sub`), so
    the employee finds it once they sign in with that verified email.
    """
    if host.is_integration or not host.email or not host.email_verified:
        return (host.subject,)
    return (host.subject, f"email:{host.email}")


def owned_by(principal: Principal) -> ColumnElement[bool]:
    """The meetings `principal` manages as their host: a person's own (see
    `host_subjects`), an integration's those it created on someone's behalf."""
    if principal.is_integration:
        return Meeting.requested_by == principal.subject
    return Meeting.host_subject.in_(host_subjects(principal))


async def get_meeting_for_host(
    session: AsyncSession, *, meeting_id: str, host: Principal
) -> Meeting:
    """The meeting if `host` owns it; someone else's meeting is simply not found (no leak)."""
    meeting = await session.scalar(
        select(Meeting)
        .options(selectinload(Meeting.invitees))
        .where(Meeting.id == meeting_id, owned_by(host))
    )
    if meeting is None:
        raise MeetingNotFound(meeting_id)
    return meeting


async def delivery_status_by_invitee(
    session: AsyncSession, meeting_id: str
) -> dict[str | None, str]:
    rows = await session.execute(
        select(Delivery.invitee_id, Delivery.status).where(Delivery.meeting_id == meeting_id)
    )
    return {invitee_id: status for invitee_id, status in rows}


async def list_meetings_for_host(
    session: AsyncSession,
    *,
    host: Principal,
    limit: int,
    after: tuple[datetime, str] | None,
) -> tuple[Sequence[tuple[Meeting, int]], tuple[datetime, str] | None]:
    """Newest first, keyset-paginated on (created_at, id) so deep pages stay fast."""
    invitee_count = (
        select(func.count(Invitee.id))
        .where(Invitee.meeting_id == Meeting.id, Invitee.removed_at.is_(None))
        .correlate(Meeting)
        .scalar_subquery()
    )
    statement = (
        select(Meeting, invitee_count)
        .where(owned_by(host))
        .order_by(Meeting.created_at.desc(), Meeting.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        created_at, last_id = after
        statement = statement.where(
            or_(
                Meeting.created_at < created_at,
                and_(Meeting.created_at == created_at, Meeting.id < last_id),
            )
        )
    rows = [(meeting, int(count)) for meeting, count in (await session.execute(statement))]
    next_after = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1][0]
        next_after = (last.created_at, last.id)
    return rows, next_after
