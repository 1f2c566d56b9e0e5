"""Request builders for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def meeting_body(**overrides: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    body: dict[str, Any] = {
        "topic": "Quarterly planning",
        "start": start.isoformat(),
        "duration_minutes": 45,
        "timezone": "Europe/Berlin",
        "invitees": [
            {"email": "ana@example.com", "name": "Ana Lima"},
            {"email": "ben@example.com", "name": "Ben Okafor"},
            {"email": "chen@partner.example.org", "name": "Chen Wei"},
        ],
        "provider": "jitsi",
    }
    body.update(overrides)
    return body
