"""`provisioner scan`: the same scan and fix as the admin page, from a shell or a cron job.

The CLI builds the app's state (providers with their resolved secrets, the policy, the
database) exactly as `serve` does, runs the scan in its own session scope, and closes
everything again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from provisioner.policy.resolve import effective_for_groups
from provisioner.scan.render import render_csv, render_fixes, render_table
from provisioner.scan.service import FixOutcome, ScanReport, fix_weak_meetings, scan
from provisioner.settings import Settings

CLI_ACTOR = "cli:scan"


@dataclass(frozen=True)
class ScanRun:
    report: ScanReport
    fixes: tuple[FixOutcome, ...] | None

    def render(self, fmt: Literal["table", "csv"]) -> str:
        return render_csv(self.report) if fmt == "csv" else render_table(self.report)


async def run_scan(
    settings: Settings,
    *,
    provider: str | None,
    fix: bool,
    hosts: list[str],
    days: int,
) -> ScanRun:
    """Scan (and with `fix`, fix and re-scan) under the org's default policy.

    Raises:
        ProviderUnknown: `provider` is not configured.
        SettingsError: the configuration cannot be loaded.
    """
    from provisioner.app import build_state, close_state

    state = build_state(settings)
    try:
        policy = effective_for_groups(state.policy, []).settings
        until = datetime.now(UTC) + timedelta(days=days)
        async with state.db.session() as session:
            report = await scan(
                session,
                providers=state.providers,
                policy=policy,
                until=until,
                hosts=hosts,
                only=provider,
            )
            if not fix:
                return ScanRun(report, None)
            outcomes, after = await fix_weak_meetings(
                session,
                report,
                providers=state.providers,
                policy=policy,
                actor=CLI_ACTOR,
                until=until,
                hosts=hosts,
                only=provider,
            )
            return ScanRun(after, outcomes)
    finally:
        await close_state(state)


__all__ = ["CLI_ACTOR", "ScanRun", "render_fixes", "run_scan"]
