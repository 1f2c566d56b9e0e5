"""The `briefing_acknowledgements` table: who acknowledged which provider's card, when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UTCDateTime, utcnow


class BriefingAcknowledgement(Base):
    """One row per (person, provider). `email` is kept so that a meeting an integration
    books for that person (stored under `email:<address>`) counts it too, and so IT can
    read the list without resolving subjects."""

    __tablename__ = "briefing_acknowledgements"
    __table_args__ = (UniqueConstraint("subject", "provider"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40))
    acknowledged_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
