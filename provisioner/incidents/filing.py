"""Filing an incident report: who may report a meeting, the attachments, the frozen evidence.

Filing follows the provisioning pattern: read in a short transaction, call the provider
with none open, then write the report, its audit event (`FILED`, which `service.py`
checks when it verifies the evidence) and its notices in one transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.crypto import FieldCipher
from provisioner.db import Database, utcnow
from provisioner.incidents.errors import InvalidIncident
from provisioner.incidents.evidence import (
    FORMAT,
    build_timeline,
    canonical_json,
    digest,
    iso,
    read_provider,
    read_records,
    report_scrubber,
)
from provisioner.incidents.models import Incident, IncidentAttachment, IncidentStatus
from provisioner.incidents.notify import notify_filed
from provisioner.incidents.schemas import IncidentCreate
from provisioner.meetings.errors import MeetingNotFound
from provisioner.meetings.models import Meeting
from provisioner.meetings.repository import host_subjects
from provisioner.providers.base import MeetingProvider
from provisioner.settings import Settings

log = structlog.get_logger(__name__)

FILED = "incident.filed"


@dataclass(frozen=True)
class Incidents:
    """The collaborators filing needs; built from the app state."""

    db: Database
    cipher: FieldCipher
    settings: Settings
    providers: Mapping[str, MeetingProvider]


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str
    content: bytes


def decode_attachments(request: IncidentCreate) -> list[NewAttachment]:
    """The API's base64 attachments as bytes (limits are checked by `check_attachments`)."""
    files = []
    for index, item in enumerate(request.attachments):
        try:
            content = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidIncident(
                "not valid base64", field=f"attachments[{index}].content_base64"
            ) from None
        files.append(NewAttachment(item.filename, item.content_type, content))
    return files


def check_attachments(files: Sequence[NewAttachment], settings: Settings) -> None:
    """Count, size and type limits, naming the offending field."""
    limits = settings.incidents
    if len(files) > limits.max_attachments:
        raise InvalidIncident(
            f"at most {limits.max_attachments} attachments are accepted", field="attachments"
        )
    for index, file in enumerate(files):
        content_type = file.content_type.split(";", 1)[0].strip().lower()
        if content_type not in limits.attachment_types:
            raise InvalidIncident(
                f"type {content_type!r} is not accepted; use one of "
                + ", ".join(limits.attachment_types),
                field=f"attachments[{index}].content_type",
            )
        if not file.content:
            raise InvalidIncident("the file is empty", field=f"attachments[{index}]")
        if len(file.content) > limits.max_attachment_bytes:
            raise InvalidIncident(
                f"the file is larger than {limits.max_attachment_bytes} bytes",
                field=f"attachments[{index}]",
            )


def _reporter_role(meeting: Meeting, reporter: Principal) -> str | None:
    if reporter.is_integration:
        return None  # a calendar system was not in the meeting
    if meeting.host_subject in host_subjects(reporter):
        return "host"
    # Someone removed from the invite list is no longer an invitee (`current_invitees`).
    if reporter.email_verified and reporter.email.lower() in {
        i.email.lower() for i in meeting.current_invitees
    }:
        return "invitee"
    return None


async def reportable_meeting(
    session: AsyncSession, *, meeting_id: str, reporter: Principal
) -> tuple[Meeting, str]:
    """The meeting and the reporter's part in it ("host" or "invitee").

    Raises:
        MeetingNotFound: no such meeting, or the reporter was neither host nor invitee.
    """
    meeting = await session.scalar(
        select(Meeting).options(selectinload(Meeting.invitees)).where(Meeting.id == meeting_id)
    )
    role = _reporter_role(meeting, reporter) if meeting is not None else None
    if meeting is None or role is None:
        raise MeetingNotFound(meeting_id)
    return meeting, role


async def file_incident(
    incidents: Incidents,
    *,
    reporter: Principal,
    request: IncidentCreate,
    attachments: Sequence[NewAttachment] = (),
) -> str:
    """File a report about a meeting the reporter hosted or was invited to; returns its id.

    Raises:
        MeetingNotFound: no such meeting, or the reporter was neither host nor invitee.
        InvalidIncident: an attachment breaks a limit.
    """
    check_attachments(attachments, incidents.settings)
    async with incidents.db.session() as session:
        meeting, role = await reportable_meeting(
            session, meeting_id=request.meeting_id, reporter=reporter
        )
        records = await read_records(session, meeting)

    now = utcnow()
    # This meeting's join links and passcodes, kept out of this snapshot only.
    scrub = report_scrubber(meeting, incidents.cipher)
    view = await read_provider(
        incidents.providers.get(meeting.provider), meeting, incidents.cipher, now=now, scrub=scrub
    )
    incident_id = str(uuid.uuid4())
    stored = [
        IncidentAttachment(
            id=str(uuid.uuid4()),
            incident_id=incident_id,
            position=position,
            filename=scrub(" ".join(file.filename.split()))[:200] or "attachment",
            content_type=file.content_type.split(";", 1)[0].strip().lower(),
            size=len(file.content),
            sha256=hashlib.sha256(file.content).hexdigest(),
            content=file.content,
        )
        for position, file in enumerate(attachments)
    ]
    summary = scrub(" ".join(request.summary.split()))[:200]
    evidence: dict[str, Any] = {
        "format": FORMAT,
        "incident_id": incident_id,
        "frozen_at": iso(now),
        "reporter": {
            "subject": reporter.subject,
            "email": reporter.email,
            "name": reporter.name,
            "role": role,
        },
        "meeting": records.meeting,
        "settings": view.settings,
        "participants": view.participants,
        "invitees": records.invitees,
        "deliveries": records.deliveries,
        "audit_trail": records.audit_trail,
        "timeline": build_timeline(records, view.participants, reported_at=now),
        # A pasted join link is scrubbed: the statement is evidence, not a way in.
        "statement": {"summary": summary, "text": scrub(request.statement)},
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in stored
        ],
    }
    frozen = canonical_json(evidence)
    sha = digest(frozen)
    async with incidents.db.session() as session:
        incident = Incident(
            id=incident_id,
            meeting_id=meeting.id,
            reporter_subject=reporter.subject,
            reporter_email=reporter.email,
            reporter_name=reporter.name,
            reporter_role=role,
            summary=summary,
            status=IncidentStatus.NEW,
            evidence_json=frozen,
            evidence_sha256=sha,
            fixes_applied=[],
            created_at=now,
            updated_at=now,
        )
        session.add(incident)
        session.add_all(stored)
        await session.flush()
        await record_event(
            session,
            actor=reporter.subject,
            action=FILED,
            target_type="incident",
            target_id=incident_id,
            details={
                "meeting_id": meeting.id,
                "reporter_role": role,
                "evidence_sha256": sha,
                "attachments": len(stored),
                "settings_read": view.settings.get("status"),
                "participants_read": view.participants.get("status"),
            },
        )
        notices = await notify_filed(
            session,
            incident=incident,
            meeting=meeting,
            reporter=reporter,
            settings=incidents.settings,
        )
    log.info("incident.filed", incident_id=incident_id, meeting_id=meeting.id, notices=notices)
    return incident_id
