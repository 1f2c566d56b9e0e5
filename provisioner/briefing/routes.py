"""Pages for the briefing: read and acknowledge a provider's card; IT's list of who has."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from provisioner.auth.deps import SessionDep, StateDep
from provisioner.auth.roles import Role
from provisioner.briefing.content import render_card_html
from provisioner.briefing.service import (
    acknowledge_briefing,
    has_acknowledged,
    list_acknowledgements,
)
from provisioner.delivery.render import (
    default_template_dir,
    make_template_environment,
    provider_label,
)
from provisioner.policy.resolve import effective_for_groups
from provisioner.web.deps import CSRF_CHECKED, WebUser, require_page_role
from provisioner.web.redirects import safe_next
from provisioner.web.render import page

router = APIRouter(tags=["web"], include_in_schema=False)
EMPLOYEE = require_page_role(Role.EMPLOYEE)
IT_ADMIN = require_page_role(Role.IT_ADMIN)
ProviderName = Annotated[str, Path(max_length=40, pattern=r"^[a-z0-9_]+$")]
NextParam = Annotated[str | None, Query(alias="next", max_length=512)]
_TEMPLATES = make_template_environment(default_template_dir())


def _not_configured(request: Request, provider: str) -> Response:
    return page(
        request,
        "forbidden.html",
        reason=f"{provider} is not a provider configured here.",
        status_code=404,
    )


@router.get("/briefings/{provider}", dependencies=[EMPLOYEE])
async def show_briefing(
    request: Request,
    provider: ProviderName,
    user: WebUser,
    session: SessionDep,
    state: StateDep,
    next_: NextParam = None,
) -> Response:
    """The provider's card, as the host would get it, with the acknowledge button."""
    if provider not in state.providers:
        return _not_configured(request, provider)
    policy = effective_for_groups(state.policy, user.groups)
    card = render_card_html(
        _TEMPLATES, provider=provider, settings=policy.settings, not_enforced=()
    )
    return page(
        request,
        "briefing.html",
        provider=provider,
        label=provider_label(provider),
        card=card,
        acknowledged=await has_acknowledged(session, host=user, provider=provider),
        required=state.policy.briefing_acknowledgement.value == "required",
        next_path=safe_next(next_) or "",
    )


@router.post("/briefings/{provider}", dependencies=[EMPLOYEE, CSRF_CHECKED])
async def acknowledge(
    request: Request,
    provider: ProviderName,
    user: WebUser,
    session: SessionDep,
    state: StateDep,
    next_: NextParam = None,
) -> Response:
    if provider not in state.providers:
        return _not_configured(request, provider)
    await acknowledge_briefing(session, host=user, provider=provider)
    target = safe_next(next_) or f"/briefings/{provider}"
    return RedirectResponse(target, status_code=303)


@router.get("/admin/briefings", dependencies=[IT_ADMIN])
async def admin_briefings(request: Request, session: SessionDep, state: StateDep) -> Response:
    """Who has acknowledged which provider's briefing, for IT."""
    return page(
        request,
        "admin_briefings.html",
        rows=await list_acknowledgements(session),
        required=state.policy.briefing_acknowledgement.value == "required",
    )
