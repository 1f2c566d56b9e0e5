"""HTTP for IT: all meetings' metadata, the audit log, the effective policy per group."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from provisioner.admin.service import list_all_meetings, policy_by_group, search_audit
from provisioner.auth.deps import SessionDep, StateDep, require_role, require_scope
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.roles import Role
from provisioner.problems import responses

router = APIRouter(
    prefix="/api/v1/admin",
    tags=["admin"],
    # Read-only, but every host's meetings and the whole audit log: a token must carry
    # `meetings:read` as well as the role.
    dependencies=[require_scope("meetings:read"), require_role(Role.IT_ADMIN)],
    responses=responses(AuthenticationFailed, PermissionDenied),
)


@router.get("/meetings")
async def list_all(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, list[dict[str, Any]]]:
    """Every host's meetings, metadata only (never a link or passcode)."""
    rows = await list_all_meetings(session, limit=limit)
    return {"data": [asdict(row) for row in rows]}


@router.get("/audit")
async def list_audit_events(
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=80)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, list[dict[str, Any]]]:
    """Audit events, newest first; `action` is a prefix filter."""
    events = await search_audit(session, action=action, target_id=target_id, limit=limit)
    return {
        "data": [
            {
                "id": e.id,
                "occurred_at": e.occurred_at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "details": e.details,
            }
            for e in events
        ]
    }


@router.get("/policy")
async def policy_per_group(state: StateDep) -> dict[str, dict[str, object]]:
    """The effective policy for the org defaults and for each group in the policy file."""
    return policy_by_group(state.policy)
