"""Dependencies for HTML pages: the signed-in user, their role, and the form's CSRF token.

Pages take only the browser session (never a bearer token): a page is for a person.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from provisioner.auth.deps import StateDep
from provisioner.auth.principal import Principal
from provisioner.auth.session import CSRF_FIELD, csrf_valid, session_principal
from provisioner.web.errors import PageForbidden, SignInRequired


async def get_web_user(request: Request, state: StateDep) -> Principal:
    principal = await session_principal(request, state.db, roles=state.settings.roles.groups)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return principal


WebUser = Annotated[Principal, Depends(get_web_user)]


def require_page_role(*roles: str) -> Any:
    """A page guard: the signed-in user holds one of `roles`."""

    async def check(user: WebUser) -> None:
        if not any(user.has_role(role) for role in roles):
            raise PageForbidden(f"this page needs the role {' or '.join(roles)}", scope="role")

    check.__name__ = "page_role_" + "_".join(r.replace("-", "_") for r in roles)
    guard: Callable[[Principal], Coroutine[Any, Any, None]] = check
    return Depends(guard)


async def check_csrf_form(request: Request) -> None:
    """Every state-changing form carries the session's synchronizer token."""
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    if not csrf_valid(request, submitted if isinstance(submitted, str) else None):
        raise PageForbidden("the form's CSRF token is missing or wrong", scope="csrf")


CSRF_CHECKED = Depends(check_csrf_form)
