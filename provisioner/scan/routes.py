"""HTTP for IT: the compliance scan as JSON (GET) and the fix (POST), it-admin only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from provisioner.auth.deps import (
    CurrentPrincipal,
    SessionDep,
    StateDep,
    WriteRateLimit,
    require_role,
    require_scope,
)
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.roles import Role
from provisioner.problems import responses
from provisioner.providers.errors import ProviderUnknown
from provisioner.ratelimit import RateLimited
from provisioner.scan.service import FixOutcome, ScanReport, ScanRow
from provisioner.scan.views import DEFAULT_DAYS, scan_with_state

# The scan reads every host's meetings (`meetings:read`); its fix changes them at the
# provider, new passcodes included, so it needs `meetings:write` too: an it-admin token
# issued read-only must not rewrite the organisation's meetings.
router = APIRouter(
    prefix="/api/v1/admin/scan",
    tags=["admin"],
    dependencies=[require_scope("meetings:read"), require_role(Role.IT_ADMIN)],
    responses=responses(AuthenticationFailed, PermissionDenied, ProviderUnknown),
)

ProviderQuery = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9_]+$")]
DaysQuery = Annotated[int, Query(ge=1, le=365)]


def _row(row: ScanRow) -> dict[str, Any]:
    m = row.meeting
    return {
        "provider": m.provider,
        "provider_meeting_id": m.provider_meeting_id,
        "host_email": m.host_email,
        "topic": m.topic,
        "start": m.start.isoformat() if m.start else None,
        "created_by_provisioner": row.managed,
        "settings": {
            "passcode": m.passcode_set,
            "waiting_room": m.waiting_room,
            "sign_in_required": m.sign_in_required,
            "join_before_host": m.join_before_host,
            "personal_meeting_id": m.personal_meeting_id,
        },
        "weaknesses": list(row.weaknesses),
    }


def _report(report: ScanReport) -> dict[str, Any]:
    return {
        "data": [_row(row) for row in report.rows],
        "weak": len(report.weak),
        "unsupported": list(report.unsupported),
        "failed": dict(report.failed),
    }


def _fix(outcome: FixOutcome) -> dict[str, Any]:
    return {
        "provider": outcome.row.meeting.provider,
        "provider_meeting_id": outcome.row.meeting.provider_meeting_id,
        "changed": sorted(outcome.changed),
        "remaining": list(outcome.remaining),
        "passcode_added": outcome.passcode_added,
        "error": outcome.error,
    }


@router.get("")
async def scan_meetings(
    session: SessionDep,
    state: StateDep,
    provider: ProviderQuery = None,
    days: DaysQuery = DEFAULT_DAYS,
) -> dict[str, Any]:
    """Upcoming meetings on each provider (any creator) with the settings weaker than the
    org policy. Metadata only: never a link or a passcode."""
    report, _ = await scan_with_state(session, state, provider=provider, days=days)
    return _report(report)


@router.post(
    "/fix",
    dependencies=[require_scope("meetings:write"), WriteRateLimit],
    responses=responses(RateLimited),
)
async def fix_meetings(
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
    provider: ProviderQuery = None,
    days: DaysQuery = DEFAULT_DAYS,
) -> dict[str, Any]:
    """Tighten every weak meeting to the policy (one audit event each); the answer is the
    re-scan, so a fix that did not take is still listed as weak."""
    report, outcomes = await scan_with_state(
        session, state, provider=provider, days=days, fix_as=principal.subject
    )
    return {**_report(report), "fixes": [_fix(o) for o in outcomes or ()]}
