"""The scan as a plain-text table and as CSV (no secrets: only whether a passcode exists).

CSV cells that a spreadsheet would run as a formula (a meeting topic is whatever its host
typed) are prefixed with a quote, the OWASP advice for CSV injection.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from provisioner.scan.service import FixOutcome, ScanReport, ScanRow

COLUMNS = (
    "provider",
    "meeting_id",
    "host",
    "topic",
    "start",
    "created_by_provisioner",
    "passcode",
    "waiting_room",
    "sign_in",
    "join_before_host",
    "personal_meeting_id",
    "weaknesses",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _flag(value: bool | None) -> str:
    return "not reported" if value is None else ("yes" if value else "no")


def row_values(row: ScanRow) -> tuple[str, ...]:
    m = row.meeting
    return (
        m.provider,
        m.provider_meeting_id,
        m.host_email,
        m.topic,
        m.start.isoformat() if m.start else "",
        "yes" if row.managed else "no",
        _flag(m.passcode_set),
        _flag(m.waiting_room),
        _flag(m.sign_in_required),
        _flag(m.join_before_host),
        _flag(m.personal_meeting_id),
        " ".join(row.weaknesses) or "ok",
    )


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def render_csv(report: ScanReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.rows:
        writer.writerow([_cell(v) for v in row_values(row)])
    return out.getvalue()


def render_table(report: ScanReport) -> str:
    lines = [tuple(c.replace("_", " ") for c in COLUMNS), *map(row_values, report.rows)]
    widths = [min(max(len(line[i]) for line in lines), 40) for i in range(len(COLUMNS))]
    text = [
        "  ".join(value[:40].ljust(widths[i]) for i, value in enumerate(line)).rstrip()
        for line in lines
    ]
    text.append(f"{len(report.rows)} meetings, {len(report.weak)} with weak settings")
    text.extend(_notes(report))
    return "\n".join(text)


def _notes(report: ScanReport) -> list[str]:
    notes = [f"{name}: cannot list meetings (not scanned)" for name in report.unsupported]
    notes += [f"{name}: scan failed ({error})" for name, error in sorted(report.failed.items())]
    return notes


def render_fixes(outcomes: Sequence[FixOutcome]) -> str:
    """One line per weak meeting: what changed, what is still weak, what the host must do."""
    lines: list[str] = []
    for o in outcomes:
        m = o.row.meeting
        head = f"{m.provider} {m.provider_meeting_id} ({m.host_email}): "
        if o.error:
            lines.append(head + f"not fixed: {o.error}")
            continue
        text = "fixed " + (", ".join(sorted(o.changed)) or "nothing")
        if o.remaining:
            text += "; still weak: " + " ".join(o.remaining)
        if o.passcode_added:
            text += "; passcode added: the host must send the invitation again"
        lines.append(head + text)
    return "\n".join(lines)
