"""The browser session: who signed in, until when, and its CSRF token.

The session is kept on the server, in the `browser_sessions` table; the cookie (Starlette's
`SessionMiddleware`: signed, its own name, HttpOnly, SameSite=Lax and Secure unless
configured for local http) carries only the session's random id, the CSRF token and,
during sign-in, Authlib's state. Two things follow. Signing out deletes the row, so a copy
of the cookie taken before is worthless at once (a cookie-only session lived on until its
`expires_at`). And the cookie stays small whatever the identity provider sends: a user in
forty groups made a 6 KB cookie, which browsers drop (4096 bytes at most).

The row keeps the id_token's identity claims, not a copy of roles: roles are recomputed
from the groups on every request, so a change to `[roles]` applies at once. `expires_at`
bounds the session on the server, whatever the browser does with the cookie's max-age.
Only the SHA-256 of the id is stored, so reading the table gives no usable session.

A request that carries a session id costs one primary-key lookup, in a short transaction
of its own (never the route's: on SQLite that would hold the only pooled connection
across the route's provider calls). The result is kept on the request, so the page
rendered at the end of it (`session_user`) needs no second query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from starlette.requests import Request

from provisioner.auth.bearer import NAME_MAX
from provisioner.auth.models import BrowserSession
from provisioner.auth.principal import Principal, manager_from_claims
from provisioner.auth.roles import session_scopes
from provisioner.crypto import CipherError, FieldCipher
from provisioner.db import Database, utcnow

log = structlog.get_logger(__name__)

_SESSION_ID = "sid"
_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Where the request keeps what `session_principal` found (None included): one lookup each.
_LOADED = "provisioner.session_principal"


def session_id_hash(session_id: str) -> str:
    """What the table stores for a session id (hex SHA-256)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _id_token_context(id_hash: str) -> str:
    # Binds the sealed id_token to its row: copied into another row, it does not decrypt.
    return f"browser_sessions.id_token:{id_hash}"


def session_row(
    *,
    session_id: str,
    claims: Mapping[str, Any],
    groups_claim: str,
    id_token: str | None,
    lifetime_seconds: int,
    cipher: FieldCipher,
) -> BrowserSession:
    """The row for a new session (not yet added to any database session)."""
    groups = claims.get(groups_claim, [])
    id_hash = session_id_hash(session_id)
    now = utcnow()
    return BrowserSession(
        id_hash=id_hash,
        subject=str(claims["sub"]),
        email=str(claims.get("email", "")).lower(),
        # Shortened to what `meetings.host_name` holds, as a bearer token's name is.
        name=str(claims.get("name") or claims.get("email") or claims["sub"])[:NAME_MAX],
        groups=[str(g) for g in groups] if isinstance(groups, list) else [],
        email_verified=claims.get("email_verified") is not False,
        manager_email=manager_from_claims(claims),
        id_token=(
            cipher.encrypt(id_token, context=_id_token_context(id_hash)) if id_token else None
        ),
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime_seconds),
    )


async def start_session(
    request: Request,
    db: Database,
    cipher: FieldCipher,
    *,
    claims: Mapping[str, Any],
    groups_claim: str,
    id_token: str | None,
    lifetime_seconds: int,
) -> None:
    """Replace whatever the session held (no fixation) with the signed-in user.

    Expired rows of everyone are purged here: sign-in is frequent enough to keep the table
    small, and rare enough that the DELETE (on an indexed column) costs nothing noticeable.
    """
    previous = request.session.get(_SESSION_ID)
    session_id = secrets.token_urlsafe(32)
    row = session_row(
        session_id=session_id,
        claims=claims,
        groups_claim=groups_claim,
        id_token=id_token,
        lifetime_seconds=lifetime_seconds,
        cipher=cipher,
    )
    async with db.session() as session:
        await session.execute(delete(BrowserSession).where(BrowserSession.expires_at <= utcnow()))
        if isinstance(previous, str):  # signing in again in the same browser
            await session.execute(
                delete(BrowserSession).where(BrowserSession.id_hash == session_id_hash(previous))
            )
        session.add(row)
    request.session.clear()
    request.session[_SESSION_ID] = session_id
    request.session[_CSRF] = secrets.token_urlsafe(32)
    request.scope.pop(_LOADED, None)


async def end_session(request: Request, db: Database, cipher: FieldCipher) -> str | None:
    """Delete the session's row and forget the cookie's content.

    Returns the id_token for the identity provider's logout hint, if there was one.
    """
    session_id = request.session.get(_SESSION_ID)
    request.session.clear()
    request.scope[_LOADED] = None
    if not isinstance(session_id, str):
        return None
    id_hash = session_id_hash(session_id)
    async with db.session() as session:
        sealed = await session.scalar(
            select(BrowserSession.id_token).where(BrowserSession.id_hash == id_hash)
        )
        await session.execute(delete(BrowserSession).where(BrowserSession.id_hash == id_hash))
    if sealed is None:
        return None
    try:
        return cipher.decrypt(sealed, context=_id_token_context(id_hash))
    except CipherError:  # a retired data key: sign out here all the same, without the hint
        log.warning("auth.id_token_unreadable")
        return None


async def session_principal(
    request: Request, db: Database, *, roles: Mapping[str, Sequence[str]]
) -> Principal | None:
    """The signed-in user, or None when there is no session, it has ended or expired."""
    if _LOADED in request.scope:
        loaded: Principal | None = request.scope[_LOADED]
        return loaded
    principal: Principal | None = None
    session_id = request.session.get(_SESSION_ID) if "session" in request.scope else None
    if isinstance(session_id, str):
        async with db.session() as session:
            row = await session.scalar(
                select(BrowserSession).where(
                    BrowserSession.id_hash == session_id_hash(session_id),
                    BrowserSession.expires_at > utcnow(),
                )
            )
        if row is not None:
            principal = _principal(row, roles)
    request.scope[_LOADED] = principal
    return principal


def session_user(request: Request) -> Principal | None:
    """The user `session_principal` found earlier in this request (None if not asked).

    For rendering, which cannot wait for the database: every page behind a sign-in has
    looked its user up already, in its dependencies.
    """
    loaded: Principal | None = request.scope.get(_LOADED)
    return loaded


def _principal(row: BrowserSession, roles: Mapping[str, Sequence[str]]) -> Principal:
    groups = tuple(str(g) for g in row.groups)
    user_roles = frozenset(role for group in groups for role in roles.get(group, ()))
    return Principal(
        subject=row.subject,
        email=row.email,
        name=row.name,
        groups=groups,
        scopes=session_scopes(user_roles),
        roles=user_roles,
        email_verified=row.email_verified,
        manager_email=row.manager_email,
    )


def csrf_token(request: Request) -> str:
    """The session's synchronizer token, made on first use (also before sign-in)."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


def csrf_valid(request: Request, submitted: str | None) -> bool:
    """Constant-time comparison of the submitted token with the session's."""
    expected = request.session.get(_CSRF) if "session" in request.scope else None
    if not isinstance(expected, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())
