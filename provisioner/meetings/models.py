"""Tables for meetings and their invitees."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provisioner.db import Base, UTCDateTime, utcnow


class MeetingState(StrEnum):
    """Where a meeting is in its life; every change is an audit event.

    requested -> provisioning -> created -> verified -> delivering -> delivered,
    with failed, cancelled, ended and rotated as exits.
    """

    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    CREATED = "created"
    VERIFIED = "verified"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ENDED = "ended"
    ROTATED = "rotated"


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        Index("ix_meetings_host_created", "host_subject", "created_at"),
        Index("ix_meetings_requested_by_created", "requested_by", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host_subject: Mapped[str] = mapped_column(String(255))
    # The calendar integration (`client:<id>`) that created this meeting on the host's
    # behalf, or None: that integration may read, reschedule, cancel and end it.
    requested_by: Mapped[str | None] = mapped_column(String(255), default=None)
    host_email: Mapped[str] = mapped_column(String(320))
    host_name: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40))
    provider_meeting_id: Mapped[str | None] = mapped_column(String(255), default=None)
    state: Mapped[str] = mapped_column(String(20), default=MeetingState.REQUESTED)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    timezone: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    enforced: Mapped[list[str]] = mapped_column(JSON, default=list)
    not_enforced: Mapped[list[str]] = mapped_column(JSON, default=list)
    reference: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    host_join_secret: Mapped[str | None] = mapped_column(Text, default=None)
    ics_uid: Mapped[str] = mapped_column(String(255))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    failure: Mapped[str | None] = mapped_column(String(500), default=None)
    # A failed attempt whose provider meeting may still exist (its deletion failed too):
    # reconciliation looks for it until the provider says it is gone.
    orphan_check_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Set on the meeting a link rotation created: the leaked meeting it replaced.
    rotated_from_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def current_invitees(self) -> list[Invitee]:
        """The people invited now (removed ones stay in `invitees` for the record)."""
        return [invitee for invitee in self.invitees if invitee.removed_at is None]

    invitees: Mapped[list[Invitee]] = relationship(
        back_populates="meeting", order_by="Invitee.position", cascade="all, delete-orphan"
    )


class Invitee(Base):
    __tablename__ = "invitees"
    __table_args__ = (UniqueConstraint("meeting_id", "email"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    personal_link: Mapped[bool] = mapped_column(default=False)
    channel: Mapped[str] = mapped_column(String(40), default="email", server_default="email")
    # Set when the host takes this person off the meeting; the row stays for the record.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    join_secret: Mapped[str | None] = mapped_column(Text, default=None)

    meeting: Mapped[Meeting] = relationship(back_populates="invitees")

    @property
    def active(self) -> bool:
        return self.removed_at is None


class AttendanceAlert(Base):
    """One unknown participant the watcher already told the host about.

    The unique key makes "alert once" hold across watcher ticks, restarts and several
    workers: a second insert for the same participant fails and no second notice is queued.
    `participant_key` is the provider's participant id, or a hash of email and name.
    """

    __tablename__ = "attendance_alerts"
    __table_args__ = (UniqueConstraint("meeting_id", "participant_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    participant_key: Mapped[str] = mapped_column(String(255))
    participant_name: Mapped[str] = mapped_column(String(200))
    delivery_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
