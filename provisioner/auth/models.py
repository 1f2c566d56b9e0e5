"""The `browser_sessions` table: one row per signed-in browser.

The cookie carries only a random session id (and the CSRF token); the identity lives here,
so sign-out can end a session for good and a user in many groups still fits in a cookie.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from provisioner.db import Base, UTCDateTime, utcnow


class BrowserSession(Base):
    """`id_hash` is the SHA-256 of the cookie's session id, never the id itself: whoever
    reads the table (a backup, a replica) gets nothing to put in a cookie. `id_token` is
    sealed with the app's `FieldCipher` (it is a bearer credential for the logout hint).
    Roles are not stored: they are recomputed from `groups` on every request."""

    __tablename__ = "browser_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    groups: Mapped[list[str]] = mapped_column(JSON)
    email_verified: Mapped[bool] = mapped_column(Boolean)
    manager_email: Mapped[str | None] = mapped_column(String(320), default=None)
    id_token: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Indexed for the purge of expired rows; the lookup goes by primary key.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
