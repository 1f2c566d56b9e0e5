"""The compliance scan: upcoming meetings at each provider, checked against the org policy."""

from provisioner.scan.findings import Weakness, weaknesses
from provisioner.scan.service import FixOutcome, ScanReport, ScanRow, fix_weak_meetings, scan

__all__ = [
    "FixOutcome",
    "ScanReport",
    "ScanRow",
    "Weakness",
    "fix_weak_meetings",
    "scan",
    "weaknesses",
]
