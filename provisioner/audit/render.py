"""Plain-text rendering of audit events for the CLI and the demo."""

from __future__ import annotations

import json
from collections.abc import Iterable

from provisioner.audit.models import AuditEvent


def render_events(events: Iterable[AuditEvent]) -> str:
    lines = []
    for event in events:
        details = json.dumps(event.details, sort_keys=True, separators=(",", ":"))
        lines.append(
            f"{event.id:>4}  {event.occurred_at:%Y-%m-%d %H:%M:%S}  "
            f"{event.action:<24} {event.target_type}:{event.target_id[:8]}  "
            f"by {event.actor[:24]:<24} {details}"
        )
    return "\n".join(lines) if lines else "(no events)"
