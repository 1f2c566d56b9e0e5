"""The `action_links` table: one row per emergency link handed to a host."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UTCDateTime, utcnow


class ActionLink(Base):
    """Nothing secret is stored: the URL's HMAC is re-derived from the id when needed.

    `(delivery_id, action)` is unique so a retried delivery shows the same links rather
    than minting new ones on every attempt.
    """

    __tablename__ = "action_links"
    __table_args__ = (UniqueConstraint("delivery_id", "action"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[str] = mapped_column(String(36))
    host_subject: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    used_by: Mapped[str | None] = mapped_column(String(255), default=None)
