"""Who may act on a meeting after it exists: its host, and responders on any meeting.

Responders (HR / security) must be able to end a call, rotate a leaked link or see who is
in it without being its host. They never receive the host's own join link: that is for the
host alone. Anyone else is told the meeting does not exist, exactly as a stranger is, so an
id does not reveal whether a meeting is there.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from provisioner.auth.principal import Principal
from provisioner.auth.roles import Role
from provisioner.meetings.errors import MeetingNotFound
from provisioner.meetings.models import Meeting
from provisioner.meetings.repository import host_subjects, owned_by


def is_host(meeting: Meeting, actor: Principal) -> bool:
    return meeting.host_subject in host_subjects(actor)


def is_responder(actor: Principal) -> bool:
    return not actor.is_integration and actor.has_role(Role.RESPONDER)


def acting_as(meeting: Meeting, actor: Principal) -> str:
    """'host', 'integration' (the one that created it) or 'responder': audited next to the
    actor, so the record says in what right."""
    if is_host(meeting, actor):
        return "host"
    return "integration" if actor.is_integration else "responder"


async def get_meeting_for_actor(
    session: AsyncSession, *, meeting_id: str, actor: Principal, for_update: bool = False
) -> Meeting:
    """The meeting if `actor` hosts it (or, an integration, created it) or is a
    responder; otherwise `MeetingNotFound`.

    Raises:
        MeetingNotFound: no such meeting, or the actor may not act on it.
    """
    statement = (
        select(Meeting).options(selectinload(Meeting.invitees)).where(Meeting.id == meeting_id)
    )
    if not is_responder(actor):
        statement = statement.where(owned_by(actor))
    if for_update:
        statement = statement.with_for_update()
    meeting = await session.scalar(statement)
    if meeting is None:
        raise MeetingNotFound(meeting_id)
    return meeting
