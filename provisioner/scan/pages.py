"""The admin page `/admin/scan`: the scan as a table, a CSV download, and a fix form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from provisioner.auth.deps import SessionDep, StateDep
from provisioner.auth.roles import Role
from provisioner.scan.render import render_csv, row_values
from provisioner.scan.views import DEFAULT_DAYS, scan_with_state
from provisioner.web.deps import CSRF_CHECKED, WebUser, require_page_role
from provisioner.web.render import page

router = APIRouter(tags=["web"], include_in_schema=False)
IT_ADMIN = require_page_role(Role.IT_ADMIN)
ProviderQuery = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z0-9_]*$")]
DaysQuery = Annotated[int, Query(ge=1, le=365)]


def _name(provider: str | None) -> str | None:
    return provider or None


@router.get("/admin/scan", dependencies=[IT_ADMIN])
async def scan_page(
    request: Request,
    session: SessionDep,
    state: StateDep,
    provider: ProviderQuery = None,
    days: DaysQuery = DEFAULT_DAYS,
) -> Response:
    report, _ = await scan_with_state(session, state, provider=_name(provider), days=days)
    return page(
        request,
        "admin_scan.html",
        report=report,
        rows=[(row, row_values(row)) for row in report.rows],
        providers=sorted(state.providers),
        provider=provider or "",
        days=days,
        fixes=None,
    )


@router.get("/admin/scan.csv", dependencies=[IT_ADMIN])
async def scan_csv(
    session: SessionDep,
    state: StateDep,
    provider: ProviderQuery = None,
    days: DaysQuery = DEFAULT_DAYS,
) -> Response:
    report, _ = await scan_with_state(session, state, provider=_name(provider), days=days)
    return Response(
        render_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="meeting-scan.csv"'},
    )


@router.post("/admin/scan/fix", dependencies=[IT_ADMIN, CSRF_CHECKED])
async def scan_fix(
    request: Request,
    session: SessionDep,
    state: StateDep,
    user: WebUser,
    provider: Annotated[str, Form(max_length=40, pattern=r"^[a-z0-9_]*$")] = "",
    days: Annotated[int, Form(ge=1, le=365)] = DEFAULT_DAYS,
) -> Response:
    """Fix every weak meeting (audited), then show the re-scan and what changed."""
    report, fixes = await scan_with_state(
        session, state, provider=_name(provider), days=days, fix_as=user.subject
    )
    return page(
        request,
        "admin_scan.html",
        report=report,
        rows=[(row, row_values(row)) for row in report.rows],
        providers=sorted(state.providers),
        provider=provider,
        days=days,
        fixes=fixes,
    )
