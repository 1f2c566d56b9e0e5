"""FastAPI dependencies: who is calling, what they may do, and the app's collaborators.

Routes read like plain typed signatures: `principal: CurrentPrincipal`. Guards that need
no value go on the decorator: `dependencies=[require_scope("meetings:write")]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.auth.bearer import BearerVerifier
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.principal import Principal
from provisioner.auth.session import CSRF_HEADER, csrf_valid, session_principal
from provisioner.ratelimit import RateLimiter
from provisioner.state import AppState


async def get_state(request: Request) -> AppState:
    """The app's collaborators. `async` although it never awaits: FastAPI runs a plain
    `def` dependency in its thread pool, a thread hop and two loop wake-ups per request."""
    state: AppState = request.app.state.provisioner
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, else rolled back."""
    async with state.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Parses `Authorization: Bearer` for us and, being FastAPI's own, declares the scheme in
# the OpenAPI document on every operation that needs a caller: /docs gets its Authorize
# button and generated clients know to send the token.
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An access token from the organisation's OpenID provider: an employee's, "
    "or an integration's client-credentials token (see the README, Integration tokens).",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


async def get_principal(request: Request, state: StateDep, bearer: BearerCredentials) -> Principal:
    """The caller from a bearer token (API clients) or else the browser session.

    A session-authenticated request that changes state must echo the session's CSRF token
    in `X-CSRF-Token`: the cookie alone is sent by the browser whoever asked for it.
    """
    if bearer is None:
        if not request.headers.get("authorization"):
            principal = await session_principal(
                request, state.db, roles=state.settings.roles.groups
            )
            if principal is not None:
                if request.method not in _SAFE_METHODS and not csrf_valid(
                    request, request.headers.get(CSRF_HEADER)
                ):
                    raise PermissionDenied("the CSRF token is missing or wrong", scope="csrf")
                structlog.contextvars.bind_contextvars(principal_id=principal.subject)
                return principal
        raise AuthenticationFailed("send an `Authorization: Bearer <token>` header")
    token = bearer.credentials.strip()
    if not token:
        raise AuthenticationFailed("send an `Authorization: Bearer <token>` header")
    verifier: BearerVerifier = state.verifier
    principal = await verifier.verify(token)
    structlog.contextvars.bind_contextvars(principal_id=principal.subject)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def principal_of(request: Request, state: AppState) -> Principal:
    """`get_principal` outside dependency injection (a route that authenticates only
    some callers itself, such as /metrics with its scrape token)."""
    return await get_principal(request, state, await _BEARER(request))


def _check_scope(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        raise PermissionDenied(f"this operation needs the {scope!r} scope", scope=scope)


def _check_role(principal: Principal, roles: tuple[str, ...], *, integrations: bool) -> None:
    if integrations and principal.is_integration:
        return
    if not any(principal.has_role(role) for role in roles):
        raise PermissionDenied(f"this operation needs the role {' or '.join(roles)}", scope="role")


def _take_write_token(request: Request, principal: Principal) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "write_limiter", None)
    if limiter is not None:
        limiter.take(principal.subject)


def require_scope(scope: str) -> Any:
    """A decorator-level guard: the caller's token must carry `scope`."""

    async def check(principal: CurrentPrincipal) -> None:
        _check_scope(principal, scope)

    check.__name__ = f"require_{scope.replace(':', '_')}"
    guard: Callable[[Principal], Coroutine[Any, Any, None]] = check
    return Depends(guard)


def require_role(*roles: str, integrations: bool = False) -> Any:
    """A decorator-level guard: the caller holds one of `roles` (from the groups claim).

    With `integrations=True` a calendar integration (client-credentials token, which has
    no groups) passes too; its scopes then decide alone.
    """

    async def check(principal: CurrentPrincipal) -> None:
        _check_role(principal, roles, integrations=integrations)

    check.__name__ = "require_role_" + "_".join(r.replace("-", "_") for r in roles)
    guard: Callable[[Principal], Coroutine[Any, Any, None]] = check
    return Depends(guard)


async def limit_writes(request: Request, principal: CurrentPrincipal) -> None:
    """Spend one of the caller's write tokens (per user or integration client)."""
    _take_write_token(request, principal)


def authorized(
    scope: str, *roles: str, integrations: bool = False, write_limited: bool = False
) -> Any:
    """The caller, after `require_scope`, `require_role` and (if `write_limited`)
    `limit_writes` have passed, in that order -- as ONE dependency.

    For the hot routes (creating a meeting): FastAPI solves every guard and every
    sub-dependency separately, and the three guards with their shared principal were
    twelve solves, about 0.5 ms of CPU per request here (README, Performance); this is
    four. Use as `principal: Annotated[Principal, authorized(...)]`.
    """

    async def check(request: Request, principal: CurrentPrincipal) -> Principal:
        _check_scope(principal, scope)
        _check_role(principal, roles, integrations=integrations)
        if write_limited:
            _take_write_token(request, principal)
        return principal

    check.__name__ = f"authorized_{scope.replace(':', '_')}"
    guard: Callable[[Request, Principal], Coroutine[Any, Any, Principal]] = check
    return Depends(guard)


WriteRateLimit = Depends(limit_writes)
