"""Incident reports: file one with its frozen evidence, read it (verified), work it.

Who may do what:
- a meeting's host or any of its invitees files a report about it;
- the reporter and responders (Role.RESPONDER) read it; anyone else is told it does not
  exist, exactly as for an id that was never used;
- responders move it new -> triaged -> resolved, add notes and record the follow-ups;
- the meeting's host sees and completes the training acknowledgement asked of them.

Every read verifies the evidence against its hash (see `evidence.py`); every change is an
audit event. Filing is `filing.py`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import GENESIS, record_event
from provisioner.audit.service import event_digest as audit_digest
from provisioner.auth.errors import PermissionDenied
from provisioner.auth.principal import Principal
from provisioner.auth.roles import Role
from provisioner.db import Database, utcnow
from provisioner.incidents.errors import (
    EvidenceTampered,
    IncidentNotFound,
    InvalidIncident,
    TransitionRefused,
)
from provisioner.incidents.evidence import (
    digest,
)
from provisioner.incidents.filing import FILED
from provisioner.incidents.fixes import SuggestedFix, suggest_fixes
from provisioner.incidents.models import (
    Incident,
    IncidentNote,
    IncidentStatus,
)
from provisioner.incidents.schemas import FollowUpUpdate
from provisioner.meetings.models import Meeting
from provisioner.meetings.repository import host_subjects

log = structlog.get_logger(__name__)
T = TypeVar("T")

NEXT_STATUS = {
    IncidentStatus.NEW: IncidentStatus.TRIAGED,
    IncidentStatus.TRIAGED: IncidentStatus.RESOLVED,
}


@dataclass(frozen=True)
class IncidentView:
    """An incident whose evidence has just been verified against its hash."""

    incident: Incident
    evidence: dict[str, Any]
    fixes: list[SuggestedFix]
    viewer_is_responder: bool


def is_responder(principal: Principal) -> bool:
    return not principal.is_integration and principal.has_role(Role.RESPONDER)


async def _load(session: AsyncSession, incident_id: str) -> Incident | None:
    incident: Incident | None = await session.scalar(
        select(Incident)
        .options(selectinload(Incident.notes), selectinload(Incident.attachments))
        .where(Incident.id == incident_id)
    )
    return incident


async def verify_evidence(session: AsyncSession, incident: Incident) -> dict[str, Any]:
    """The evidence, if and only if it is exactly what was frozen.

    Checks, in order: the stored bytes hash to the stored hash; that hash is the one the
    append-only audit chain recorded at filing; the snapshot names this incident; every
    attachment's bytes hash to what the snapshot lists.

    Raises:
        EvidenceTampered: any check fails.
    """

    def fail(reason: str) -> EvidenceTampered:
        log.error("incident.evidence_tampered", incident_id=incident.id, reason=reason)
        return EvidenceTampered(incident.id, reason=reason)

    if digest(incident.evidence_json) != incident.evidence_sha256:
        raise fail("the snapshot does not hash to its stored hash")
    filed_rows = list(
        await session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.target_type == "incident",
                AuditEvent.target_id == incident.id,
                AuditEvent.action == FILED,
            )
            .order_by(AuditEvent.id)
            .limit(2)
        )
    )
    if len(filed_rows) != 1:
        raise fail("the audit log does not hold exactly one filing of this incident")
    filed = filed_rows[0]
    if not await _filing_is_chained(session, filed):
        raise fail("the audit event of the filing does not fit the audit chain")
    if filed.details.get("evidence_sha256") != incident.evidence_sha256:
        raise fail("the stored hash differs from the one the audit log recorded")
    try:
        evidence = json.loads(incident.evidence_json)
    except ValueError:
        raise fail("the snapshot is not JSON") from None
    if not isinstance(evidence, dict) or evidence.get("incident_id") != incident.id:
        raise fail("the snapshot belongs to another incident")
    listed = {a["id"]: a["sha256"] for a in evidence.get("attachments", ())}
    actual = {a.id: hashlib.sha256(a.content).hexdigest() for a in incident.attachments}
    if listed != actual or any(a.sha256 != listed.get(a.id) for a in incident.attachments):
        raise fail("an attachment differs from the one frozen with the report")
    return evidence


async def _filing_is_chained(session: AsyncSession, filed: AuditEvent) -> bool:
    """The filing event hashes to its stored hash (as `verify_chain` recomputes it), and
    its neighbours agree: the event before it ends in its `prev_hash`, the one after it
    starts from its hash. Editing the details (and the hash with them) breaks one of these.
    """
    expected = audit_digest(
        prev_hash=filed.prev_hash,
        occurred_at=filed.occurred_at,
        actor=filed.actor,
        action=filed.action,
        target_type=filed.target_type,
        target_id=filed.target_id,
        details=filed.details,
    )
    if expected != filed.hash:
        return False
    before = await session.scalar(
        select(AuditEvent.hash)
        .where(AuditEvent.id < filed.id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if (before or GENESIS) != filed.prev_hash:
        return False
    after = await session.scalar(
        select(AuditEvent.prev_hash)
        .where(AuditEvent.id > filed.id)
        .order_by(AuditEvent.id)
        .limit(1)
    )
    return after is None or after == filed.hash


async def record_tampering(
    db: Database, *, incident_id: str, viewer: Principal, reason: str
) -> None:
    """Audit a failed integrity check in its own transaction (the reader's rolls back)."""
    async with db.session() as session:
        await record_event(
            session,
            actor=viewer.subject,
            action="incident.evidence_tampered",
            target_type="incident",
            target_id=incident_id,
            details={"reason": reason},
        )


async def get_incident(
    session: AsyncSession, *, incident_id: str, viewer: Principal
) -> IncidentView:
    """The incident for a responder or its reporter, evidence verified.

    Raises:
        IncidentNotFound: no such incident, or the viewer may not see it.
        EvidenceTampered: the evidence failed its check.
    """
    incident = await _load(session, incident_id)
    responder = is_responder(viewer)
    if incident is None or not (responder or _is_reporter(incident, viewer)):
        raise IncidentNotFound(incident_id)
    evidence = await verify_evidence(session, incident)
    return IncidentView(incident, evidence, suggest_fixes(evidence), responder)


def _is_reporter(incident: Incident, viewer: Principal) -> bool:
    return not viewer.is_integration and incident.reporter_subject == viewer.subject


async def list_incidents(
    session: AsyncSession, *, viewer: Principal, limit: int = 200
) -> list[Incident]:
    """All incidents for a responder; the viewer's own reports for anyone else."""
    statement = select(Incident).order_by(Incident.created_at.desc(), Incident.id).limit(limit)
    if not is_responder(viewer):
        if viewer.is_integration:
            return []
        statement = statement.where(Incident.reporter_subject == viewer.subject)
    return list((await session.scalars(statement)).all())


async def _for_responder(session: AsyncSession, incident_id: str, actor: Principal) -> IncidentView:
    view = await get_incident(session, incident_id=incident_id, viewer=actor)
    if not view.viewer_is_responder:
        raise PermissionDenied("only responders work incidents", scope="role")
    return view


async def add_note(
    session: AsyncSession, *, incident_id: str, author: Principal, body: str
) -> IncidentNote:
    """A responder's note; audited (the text itself stays in the incident, not the log)."""
    view = await _for_responder(session, incident_id, author)
    note = _note(view.incident, author, body)
    await record_event(
        session,
        actor=author.subject,
        action="incident.note_added",
        target_type="incident",
        target_id=incident_id,
        details={"note_id": note.id},
    )
    return note


def _note(incident: Incident, author: Principal, body: str, **status: str) -> IncidentNote:
    note = IncidentNote(
        id=str(uuid.uuid4()),
        incident_id=incident.id,
        position=len(incident.notes),
        author_subject=author.subject,
        author_name=author.name,
        body=body,
        created_at=utcnow(),
        **status,
    )
    incident.notes.append(note)
    return note


async def transition(
    session: AsyncSession, *, incident_id: str, actor: Principal, to: str, note: str = ""
) -> Incident:
    """Move the incident one step forward (new -> triaged -> resolved), with a note.

    Raises:
        TransitionRefused: not the next step.
    """
    view = await _for_responder(session, incident_id, actor)
    incident = view.incident
    current = IncidentStatus(incident.status)
    if NEXT_STATUS.get(current) != to:
        raise TransitionRefused(incident_id, current=current, requested=to)
    _note(incident, actor, note or f"Marked {to}.", from_status=current, to_status=to)
    incident.status = to
    incident.updated_at = utcnow()
    await record_event(
        session,
        actor=actor.subject,
        action=f"incident.{to}",
        target_type="incident",
        target_id=incident_id,
        details={"from": str(current), "to": to},
    )
    return incident


async def update_follow_ups(
    session: AsyncSession, *, incident_id: str, actor: Principal, update: FollowUpUpdate
) -> Incident:
    """Record what was done after the incident (fixes, police, provider notice).

    Raises:
        InvalidIncident: a fix code that is not one of this incident's suggestions, or a
            law-enforcement reference without saying law enforcement was contacted.
    """
    view = await _for_responder(session, incident_id, actor)
    incident = view.incident
    changed: dict[str, Any] = {}
    if update.fixes_applied is not None:
        known = {fix.code for fix in view.fixes}
        for index, code in enumerate(update.fixes_applied):
            if code not in known:
                raise InvalidIncident(
                    f"{code!r} is not a suggested fix for this incident",
                    field=f"fixes_applied[{index}]",
                )
        incident.fixes_applied = sorted(set(update.fixes_applied))
        changed["fixes_applied"] = incident.fixes_applied
    if update.law_enforcement_contacted is not None:
        incident.law_enforcement_contacted = update.law_enforcement_contacted
        changed["law_enforcement_contacted"] = update.law_enforcement_contacted
        if not update.law_enforcement_contacted:
            incident.law_enforcement_reference = None
    if update.law_enforcement_reference is not None:
        reference = " ".join(update.law_enforcement_reference.split()) or None
        if reference and not incident.law_enforcement_contacted:
            raise InvalidIncident(
                "say law enforcement was contacted before giving its reference",
                field="law_enforcement_reference",
            )
        incident.law_enforcement_reference = reference
        changed["law_enforcement_reference_set"] = reference is not None
    # Stamped when it is first marked sent, cleared when unmarked; saving the form again
    # with the box still ticked keeps the original time.
    was_sent = incident.provider_notice_sent_at is not None
    if update.provider_notice_sent is not None and update.provider_notice_sent != was_sent:
        incident.provider_notice_sent_at = utcnow() if update.provider_notice_sent else None
        changed["provider_notice_sent"] = update.provider_notice_sent
    incident.updated_at = utcnow()
    await record_event(
        session,
        actor=actor.subject,
        action="incident.follow_ups_updated",
        target_type="incident",
        target_id=incident_id,
        details=changed,
    )
    return incident


async def get_training(
    session: AsyncSession, *, incident_id: str, host: Principal
) -> tuple[Incident, Meeting]:
    """The incident and meeting, if `host` hosted the meeting (nothing of the evidence).

    Raises:
        IncidentNotFound: no such incident, or `host` is not the meeting's host.
    """
    incident = await session.get(Incident, incident_id)
    meeting = await session.get(Meeting, incident.meeting_id) if incident else None
    if (
        incident is None
        or meeting is None
        or host.is_integration
        or meeting.host_subject not in host_subjects(host)
    ):
        raise IncidentNotFound(incident_id)
    return incident, meeting


async def acknowledge_training(
    session: AsyncSession, *, incident_id: str, host: Principal
) -> Incident:
    """The host confirms the security follow-up; idempotent (the first time is kept)."""
    incident, _ = await get_training(session, incident_id=incident_id, host=host)
    if incident.training_acknowledged_at is None:
        incident.training_acknowledged_at = utcnow()
        incident.updated_at = utcnow()
        await record_event(
            session,
            actor=host.subject,
            action="incident.training_acknowledged",
            target_type="incident",
            target_id=incident_id,
            details={"meeting_id": incident.meeting_id},
        )
    return incident


async def run_verified(
    db: Database,
    *,
    incident_id: str,
    viewer: Principal,
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Run `work` in one transaction; a failed integrity check is audited apart, then raised.

    The reader's own transaction rolls back with the error, so the alarm is written in a
    second one, after the first has closed (SQLite serves one connection at a time).
    """
    try:
        async with db.session() as session:
            return await work(session)
    except EvidenceTampered as exc:
        await record_tampering(db, incident_id=incident_id, viewer=viewer, reason=exc.reason)
        raise
