"""Read-only queries for the it-admin role.

Metadata only: nothing here decrypts a join link or passcode, so an IT admin can see that a
meeting exists, who hosts it and how it is protected, but cannot join it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.models import AuditEvent
from provisioner.meetings.models import Invitee, Meeting
from provisioner.policy.document import PolicyDocument
from provisioner.policy.render import effective_policy_as_dict
from provisioner.policy.resolve import effective_for_groups


@dataclass(frozen=True)
class MeetingMetadata:
    id: str
    topic: str
    host_email: str
    provider: str
    state: str
    starts_at: Any
    ends_at: Any
    timezone: str
    invitee_count: int
    not_enforced: tuple[str, ...]


async def list_all_meetings(session: AsyncSession, *, limit: int = 100) -> list[MeetingMetadata]:
    """Newest meetings first, across every host."""
    count = (
        select(func.count(Invitee.id))
        .where(Invitee.meeting_id == Meeting.id, Invitee.removed_at.is_(None))
        .correlate(Meeting)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Meeting, count).order_by(Meeting.created_at.desc(), Meeting.id.desc()).limit(limit)
    )
    return [
        MeetingMetadata(
            id=m.id,
            topic=m.topic,
            host_email=m.host_email,
            provider=m.provider,
            state=m.state,
            starts_at=m.starts_at,
            ends_at=m.ends_at,
            timezone=m.timezone,
            invitee_count=int(n),
            not_enforced=tuple(m.not_enforced),
        )
        for m, n in rows
    ]


async def search_audit(
    session: AsyncSession,
    *,
    action: str | None = None,
    target_id: str | None = None,
    limit: int = 200,
) -> Sequence[AuditEvent]:
    """Newest events first; `action` matches a prefix (`meeting.` finds every meeting event)."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        escaped = action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(AuditEvent.action.like(escaped + "%", escape="\\"))
    if target_id:
        statement = statement.where(AuditEvent.target_id == target_id)
    return (await session.scalars(statement)).all()


def policy_by_group(document: PolicyDocument) -> dict[str, dict[str, object]]:
    """The effective policy for no group (org defaults) and for each group on its own."""
    result = {"(defaults)": effective_policy_as_dict(effective_for_groups(document, ()))}
    for group in sorted(document.groups):
        result[group] = effective_policy_as_dict(effective_for_groups(document, (group,)))
    return result
