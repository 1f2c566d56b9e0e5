"""FastAPI dependencies: who is calling, what they may do, and the app's collaborators.

Routes read like plain typed signatures: `principal: CurrentPrincipal`. Guards that need
no value go on the decorator: `dependencies=[require_scope("meetings:write")]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.auth.bearer import BearerVerifier
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.principal import Principal
from provisioner.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.provisioner
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, else rolled back."""
    async with state.db.session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_principal(request: Request, state: StateDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("send an `Authorization: Bearer <token>` header")
    verifier: BearerVerifier = state.verifier
    principal = await verifier.verify(token.strip())
    structlog.contextvars.bind_contextvars(principal_id=principal.subject)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_scope(scope: str) -> Any:
    """A decorator-level guard: the caller's token must carry `scope`."""

    async def check(principal: CurrentPrincipal) -> None:
        if not principal.has_scope(scope):
            raise PermissionDenied(f"this operation needs the {scope!r} scope", scope=scope)

    check.__name__ = f"require_{scope.replace(':', '_')}"
    guard: Callable[[Principal], Coroutine[Any, Any, None]] = check
    return Depends(guard)
