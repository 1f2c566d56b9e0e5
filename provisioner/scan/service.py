"""Scan every provider that can list meetings, flag weak ones, and optionally fix them.

The scan reads; only `fix_weak_meetings` changes anything, and it records one audit
event per meeting it changed, then scans again so the report shows what the provider
now says (a fix that did not take stays flagged). One provider failing does not stop the
others: its failure is reported by error type, never by raw provider text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.meetings.models import Meeting
from provisioner.policy.model import Control, MeetingSettings
from provisioner.providers.base import (
    ExistingMeeting,
    FixesMeetings,
    ListsMeetings,
    MeetingProvider,
)
from provisioner.providers.errors import ProviderError
from provisioner.providers.registry import pick
from provisioner.scan.findings import Weakness, weaknesses

log = structlog.get_logger(__name__)

AUDIT_ACTION = "scan.meeting_fixed"
AUDIT_TARGET = "provider_meeting"
_FIXED_BY: Mapping[Control, Weakness] = {
    Control.PASSCODE: Weakness.NO_PASSCODE,
    Control.WAITING_ROOM: Weakness.NO_WAITING_ROOM,
    Control.SIGN_IN_REQUIRED: Weakness.NO_SIGN_IN,
    Control.JOIN_BEFORE_HOST: Weakness.JOIN_BEFORE_HOST,
}


@dataclass(frozen=True)
class ScanRow:
    """One upcoming meeting; `managed` is True when provisioner created it."""

    meeting: ExistingMeeting
    weaknesses: tuple[Weakness, ...]
    managed: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.meeting.provider, self.meeting.provider_meeting_id


@dataclass(frozen=True)
class ScanReport:
    """Every meeting found, plus the providers that could not be scanned and why."""

    rows: tuple[ScanRow, ...]
    unsupported: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)

    @property
    def weak(self) -> tuple[ScanRow, ...]:
        return tuple(row for row in self.rows if row.weaknesses)


@dataclass(frozen=True)
class FixOutcome:
    """What a fix did to one weak meeting, as the re-scan shows it.

    `remaining` are the weaknesses the provider still reports afterwards (a personal
    meeting ID cannot be changed in place; the host must reschedule). `passcode_added`
    means invitees need the new passcode: the host must send the invitation again.
    """

    row: ScanRow
    changed: frozenset[Control]
    remaining: tuple[Weakness, ...]
    error: str | None = None

    @property
    def passcode_added(self) -> bool:
        return Control.PASSCODE in self.changed


def _audit_id(meeting: ExistingMeeting) -> str:
    return f"{meeting.provider}:{meeting.provider_meeting_id}"[:64]


async def _ours(session: AsyncSession, provider: str, ids: set[str]) -> set[str]:
    """Which of these provider meeting ids belong to meetings in our database."""
    if not ids:
        return set()
    found = await session.scalars(
        select(Meeting.provider_meeting_id).where(
            Meeting.provider == provider, Meeting.provider_meeting_id.in_(ids)
        )
    )
    return {value for value in found if value is not None}


async def scan(
    session: AsyncSession,
    *,
    providers: Mapping[str, MeetingProvider],
    policy: MeetingSettings,
    until: datetime,
    hosts: Sequence[str] = (),
    only: str | None = None,
) -> ScanReport:
    """List upcoming meetings on each provider (or only `only`) and flag weak settings.

    Args:
        session: to mark meetings provisioner created (besides the provider's marker).
        providers: the configured providers.
        policy: the effective org policy the meetings are held to.
        until: the end of the scan window.
        hosts: host addresses to scan; empty lets each provider enumerate its users.
        only: one provider's name.

    Raises:
        ProviderUnknown: `only` names a provider that is not configured.
    """
    chosen = {only: pick(providers, only)} if only else dict(providers)
    rows: list[ScanRow] = []
    unsupported: list[str] = []
    failed: dict[str, str] = {}
    for name, provider in sorted(chosen.items()):
        if not isinstance(provider, ListsMeetings):
            unsupported.append(name)
            continue
        try:
            found = await provider.list_upcoming(hosts=hosts, until=until)
        except ProviderError as error:
            log.warning("scan.provider_failed", provider=name, error_type=type(error).__name__)
            failed[name] = type(error).__name__
            continue
        ids = {m.provider_meeting_id for m in found}
        ids |= {m.reference["series_id"] for m in found if "series_id" in m.reference}
        ours = await _ours(session, name, ids)
        for meeting in found:
            series = meeting.reference.get("series_id")
            managed = (
                meeting.created_by is not None
                or meeting.provider_meeting_id in ours
                or (series is not None and series in ours)
            )
            rows.append(ScanRow(meeting, weaknesses(meeting, policy), managed))
    log.info("scan.completed", meetings=len(rows), weak=sum(1 for r in rows if r.weaknesses))
    return ScanReport(tuple(rows), tuple(unsupported), failed)


async def fix_weak_meetings(
    session: AsyncSession,
    report: ScanReport,
    *,
    providers: Mapping[str, MeetingProvider],
    policy: MeetingSettings,
    actor: str,
    until: datetime,
    hosts: Sequence[str] = (),
    only: str | None = None,
) -> tuple[tuple[FixOutcome, ...], ScanReport]:
    """Tighten each weak meeting in `report` to `policy`, audit each change, re-scan.

    Returns:
        One outcome per weak meeting, and the report of the re-scan that proves it.
    """
    changes: dict[tuple[str, str], frozenset[Control]] = {}
    errors: dict[tuple[str, str], str] = {}
    for row in report.weak:
        provider = providers.get(row.meeting.provider)
        if not isinstance(provider, FixesMeetings):
            errors[row.key] = "the provider cannot change existing meetings"
            continue
        try:
            changes[row.key] = await provider.apply_settings(row.meeting, policy)
        except ProviderError as error:
            log.warning(
                "scan.fix_failed", provider=row.meeting.provider, error_type=type(error).__name__
            )
            errors[row.key] = type(error).__name__
    after = await scan(
        session, providers=providers, policy=policy, until=until, hosts=hosts, only=only
    )
    now = {row.key: row.weaknesses for row in after.rows}
    outcomes: list[FixOutcome] = []
    for row in report.weak:
        changed = changes.get(row.key, frozenset())
        outcome = FixOutcome(row, changed, now.get(row.key, ()), errors.get(row.key))
        outcomes.append(outcome)
        if changed:
            await record_event(
                session,
                actor=actor,
                action=AUDIT_ACTION,
                target_type=AUDIT_TARGET,
                target_id=_audit_id(row.meeting),
                details={
                    "provider": row.meeting.provider,
                    "provider_meeting_id": row.meeting.provider_meeting_id,
                    "host_email": row.meeting.host_email,
                    "managed": row.managed,
                    "fixed": sorted(_FIXED_BY[c] for c in changed if c in _FIXED_BY),
                    "remaining": list(outcome.remaining),
                    "passcode_added": outcome.passcode_added,
                },
            )
    return tuple(outcomes), after
