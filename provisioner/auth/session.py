"""The browser session: who signed in, until when, and its CSRF token.

The session lives in a signed cookie (Starlette's `SessionMiddleware`, with its own cookie
name, HttpOnly, SameSite=Lax and Secure unless configured for local http). It keeps the
id_token's identity claims, not a copy of roles: roles are recomputed from the groups on
every request, so a change to `[roles]` applies at once. `expires_at` bounds the session on
the server side as well, whatever the browser does with the cookie's max-age.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request

from provisioner.auth.bearer import NAME_MAX
from provisioner.auth.principal import Principal, manager_from_claims
from provisioner.auth.roles import session_scopes

_USER = "user"
_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def start_session(
    request: Request,
    *,
    claims: Mapping[str, Any],
    groups_claim: str,
    id_token: str | None,
    lifetime_seconds: int,
) -> None:
    """Replace whatever the session held (no fixation) with the signed-in user."""
    groups = claims.get(groups_claim, [])
    request.session.clear()
    request.session[_USER] = {
        "sub": str(claims["sub"]),
        "email": str(claims.get("email", "")).lower(),
        # Shortened to what `meetings.host_name` holds, as a bearer token's name is.
        "name": str(claims.get("name") or claims.get("email") or claims["sub"])[:NAME_MAX],
        "groups": [str(g) for g in groups] if isinstance(groups, list) else [],
        "email_verified": claims.get("email_verified") is not False,
        "manager_email": manager_from_claims(claims),
        "expires_at": int(time.time()) + lifetime_seconds,
    }
    if id_token:
        request.session["id_token"] = id_token
    request.session[_CSRF] = secrets.token_urlsafe(32)


def end_session(request: Request) -> str | None:
    """Forget the user; returns the id_token for the identity provider's logout hint."""
    id_token = request.session.get("id_token")
    request.session.clear()
    return id_token if isinstance(id_token, str) else None


def session_principal(request: Request, *, roles: Mapping[str, Sequence[str]]) -> Principal | None:
    """The signed-in user, or None when there is no session or it has expired."""
    if "session" not in request.scope:
        return None
    user = request.session.get(_USER)
    if not isinstance(user, dict) or int(user.get("expires_at", 0)) <= time.time():
        return None
    groups = tuple(str(g) for g in user.get("groups", []))
    user_roles = frozenset(role for group in groups for role in roles.get(group, ()))
    return Principal(
        subject=str(user["sub"]),
        email=str(user["email"]),
        name=str(user["name"]),
        groups=groups,
        scopes=session_scopes(user_roles),
        roles=user_roles,
        email_verified=user.get("email_verified") is not False,
        manager_email=manager if isinstance(manager := user.get("manager_email"), str) else None,
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
