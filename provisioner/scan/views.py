"""Request-independent glue shared by the scan's API route and admin page: the window,
the org policy, and one call that scans (and optionally fixes) with the app's state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.policy.resolve import effective_for_groups
from provisioner.scan.service import FixOutcome, ScanReport, fix_weak_meetings, scan
from provisioner.state import AppState

DEFAULT_DAYS = 30


async def scan_with_state(
    session: AsyncSession,
    state: AppState,
    *,
    provider: str | None,
    days: int,
    fix_as: str | None = None,
) -> tuple[ScanReport, tuple[FixOutcome, ...] | None]:
    """Scan under the org's default policy; with `fix_as` (the actor), fix and re-scan."""
    policy = effective_for_groups(state.policy, []).settings
    until = datetime.now(UTC) + timedelta(days=days)
    report = await scan(
        session, providers=state.providers, policy=policy, until=until, only=provider
    )
    if fix_as is None:
        return report, None
    outcomes, after = await fix_weak_meetings(
        session,
        report,
        providers=state.providers,
        policy=policy,
        actor=fix_as,
        until=until,
        only=provider,
    )
    return after, outcomes
