"""The outbox: one row per message to send, written in the meeting's own transaction."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UTCDateTime, utcnow


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (first or retry)
    SENDING = "sending"  # claimed by a worker until `lease_until`
    SENT = "sent"
    DEAD = "dead"  # a permanent refusal, or failing past max attempts and the retry window
    SUPERSEDED = "superseded"  # a newer message (reschedule, cancel) replaced it unsent


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_meeting", "meeting_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    invitee_id: Mapped[str | None] = mapped_column(
        ForeignKey("invitees.id", ondelete="CASCADE"), default=None
    )
    role: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(40))
    recipient_email: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    sequence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # For alerts (role "alert"): who was not reached and why; never a link or passcode.
    notice: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
