"""Tables for incident reports, their notes and attachments.

The evidence is stored as the exact canonical JSON bytes that were hashed (`evidence_json`
beside `evidence_sha256`), not as a JSON column: a database that re-serialises JSON (key
order, spacing, number formats) would otherwise break the hash of an untouched report.
Only the workflow columns (status, follow-ups) change after a report is filed; the
evidence and attachments never do.

`meeting_id` carries no foreign key on purpose: a report must outlive the meeting it is
about, whatever later happens to that row.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provisioner.db import Base, UTCDateTime, utcnow


class IncidentStatus(StrEnum):
    """new -> triaged -> resolved; each move is an audit event and a note."""

    NEW = "new"
    TRIAGED = "triaged"
    RESOLVED = "resolved"


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_meeting", "meeting_id"),
        Index("ix_incidents_reporter", "reporter_subject", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(String(36))
    reporter_subject: Mapped[str] = mapped_column(String(255))
    reporter_email: Mapped[str] = mapped_column(String(320))
    reporter_name: Mapped[str] = mapped_column(String(200))
    reporter_role: Mapped[str] = mapped_column(String(10))  # "host" or "invitee"
    summary: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12), default=IncidentStatus.NEW)
    evidence_json: Mapped[str] = mapped_column(Text)
    evidence_sha256: Mapped[str] = mapped_column(String(64))
    # Follow-ups (#10): what was done after the incident. Mutable, audited, not evidence.
    fixes_applied: Mapped[list[str]] = mapped_column(JSON, default=list)
    law_enforcement_contacted: Mapped[bool | None] = mapped_column(default=None)
    law_enforcement_reference: Mapped[str | None] = mapped_column(String(200), default=None)
    provider_notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    training_acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    notes: Mapped[list[IncidentNote]] = relationship(
        back_populates="incident", order_by="IncidentNote.position", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[IncidentAttachment]] = relationship(
        back_populates="incident",
        order_by="IncidentAttachment.position",
        cascade="all, delete-orphan",
    )

    @property
    def follow_ups(self) -> dict[str, Any]:
        return {
            "fixes_applied": list(self.fixes_applied),
            "law_enforcement_contacted": self.law_enforcement_contacted,
            "law_enforcement_reference": self.law_enforcement_reference,
            "provider_notice_sent_at": self.provider_notice_sent_at,
            "training_acknowledged_at": self.training_acknowledged_at,
        }


class IncidentNote(Base):
    """A responder's note; a status change is a note with `from_status`/`to_status` set."""

    __tablename__ = "incident_notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    author_subject: Mapped[str] = mapped_column(String(255))
    author_name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(String(12), default=None)
    to_status: Mapped[str | None] = mapped_column(String(12), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    incident: Mapped[Incident] = relationship(back_populates="notes")


class IncidentAttachment(Base):
    """A file the reporter attached; its SHA-256 is also inside the hashed evidence."""

    __tablename__ = "incident_attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)

    incident: Mapped[Incident] = relationship(back_populates="attachments")
