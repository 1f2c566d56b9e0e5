"""Browser sessions for tests that need a signed-in browser but no identity provider.

`browser_session(...)` gives the headers of a session cookie signed with `SESSION_SECRET`
the way Starlette's SessionMiddleware writes it, holding a new random session id and the
CSRF token. The session's row is not written there (the call needs no database, so test
modules may make their sessions at import): `store_browser_sessions(state)` writes every
session made so far into that app's database. The `state` fixture calls it once, and the
`client` fixture before each request, so a session made inside a test works as well.
"""

from __future__ import annotations

import base64
import json
import secrets
import weakref
from typing import Any

from itsdangerous import TimestampSigner
from sqlalchemy import select

from provisioner.auth.models import BrowserSession
from provisioner.auth.session import session_id_hash, session_row
from provisioner.db import Database
from provisioner.state import AppState

# The secret browser sessions are signed with; put `BROWSER_OIDC` in the settings' `oidc`.
SESSION_SECRET = "test-session-secret-0123456789abcdef"  # noqa: S105 (a test's own value)
BROWSER_OIDC = {"session_secret": SESSION_SECRET, "insecure_http_cookies": True}
COOKIE_NAME = "provisioner_session"
LIFETIME_SECONDS = 3600

# Every session `browser_session` made, by session id: its identity claims.
_MADE: dict[str, dict[str, Any]] = {}
# Per database, the session ids already stored there.
_STORED: weakref.WeakKeyDictionary[Database, set[str]] = weakref.WeakKeyDictionary()


def session_cookie(session_id: str, csrf: str) -> str:
    """The cookie's value for `session_id`, signed as SessionMiddleware signs it."""
    data = base64.b64encode(json.dumps({"sid": session_id, "csrf": csrf}).encode())
    return TimestampSigner(SESSION_SECRET).sign(data).decode()


def browser_session(
    subject: str, email: str, name: str, *groups: str, csrf: str | None = None
) -> tuple[dict[str, str], str]:
    """Headers with a session cookie for this user, and its CSRF token."""
    csrf = csrf if csrf is not None else secrets.token_urlsafe(16)
    session_id = secrets.token_urlsafe(32)
    _MADE[session_id] = {
        "sub": subject,
        "email": email,
        "name": name,
        "groups": list(groups),
        "email_verified": True,
    }
    return {"Cookie": f"{COOKIE_NAME}={session_cookie(session_id, csrf)}"}, csrf


async def store_browser_sessions(state: AppState) -> None:
    """Write the rows of the sessions made so far that `state`'s database lacks."""
    stored = _STORED.setdefault(state.db, set())
    missing = [session_id for session_id in _MADE if session_id not in stored]
    if not missing:
        return
    async with state.db.session() as session:
        present = set(
            await session.scalars(
                select(BrowserSession.id_hash).where(
                    BrowserSession.id_hash.in_([session_id_hash(s) for s in missing])
                )
            )
        )
        for session_id in missing:
            if session_id_hash(session_id) not in present:
                session.add(
                    session_row(
                        session_id=session_id,
                        claims=_MADE[session_id],
                        groups_claim="groups",
                        id_token=None,
                        lifetime_seconds=LIFETIME_SECONDS,
                        cipher=state.cipher,
                    )
                )
    stored.update(missing)
