"""HTTP for the policy: what applies to the caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from provisioner.auth.deps import CurrentPrincipal, StateDep, require_role
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.roles import Role
from provisioner.policy.render import effective_policy_as_dict
from provisioner.policy.resolve import effective_for_groups
from provisioner.problems import responses

router = APIRouter(prefix="/api/v1/policy", tags=["policy"])


@router.get(
    "",
    dependencies=[require_role(Role.EMPLOYEE, Role.IT_ADMIN, Role.RESPONDER)],
    responses=responses(AuthenticationFailed, PermissionDenied),
)
async def get_effective_policy(principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """The caller's effective policy: each control's value, lock, enforcement and origin."""
    policy = effective_for_groups(state.policy, principal.groups)
    return {"groups": list(principal.groups), "controls": effective_policy_as_dict(policy)}
