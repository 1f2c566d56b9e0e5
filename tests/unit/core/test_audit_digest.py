"""The audit hash format is frozen: chains written before still verify.

`event_digest` now builds the canonical body around the "prev" value
(`body_around_prev`, which PostgreSQL's `audit_append` completes); it must give exactly
the hash the original one-piece serialisation gave, whatever the details hold.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from provisioner.audit.service import GENESIS, body_around_prev, event_digest

AT = datetime(2026, 12, 3, 13, 5, 7, 120, tzinfo=UTC)
PREV = hashlib.sha256(b"the event before").hexdigest()


def original_digest(
    *, prev_hash: str, occurred_at: datetime, actor: str, action: str,
    target_type: str, target_id: str, details: dict[str, Any],
) -> str:  # fmt: skip
    """The format as first written (sessions 1-4), kept verbatim as the reference."""
    body = json.dumps(
        {
            "prev": prev_hash,
            "at": occurred_at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "target": [target_type, target_id],
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


AWKWARD: list[tuple[str, str, dict[str, Any]]] = [
    ("meeting", "m1", {}),
    ("meeting", "m1", {"provider": "zoom", "invitees": 3, "idempotency": True}),
    ("meeting", "m1", {"prev": "not the chain", "target": ["x", "y"], "zz": None}),
    ("meeting", ',"target":["a","b"]}', {"nested": {"target": [1, 2], "prev": ""}}),
    ('quote"d', "back\\slash", {"text": 'a ","target":[" b', "list": [{"target": []}]}),
    ("meeting", "ünïcödé", {"name": "Zoë 東京", "emoji": "🔒", "ctrl": "\x00\x1f"}),
    ("meeting", "m1", {"when": AT, "ratio": 0.1, "big": 10**30}),  # default=str, floats
]


@pytest.mark.parametrize(("target_type", "target_id", "details"), AWKWARD)
@pytest.mark.parametrize("prev", [GENESIS, PREV])
def test_the_digest_is_the_original_one(
    prev: str, target_type: str, target_id: str, details: dict[str, Any]
) -> None:
    event: dict[str, Any] = {
        "occurred_at": AT,
        "actor": "dana",
        "action": "meeting.created",
        "target_type": target_type,
        "target_id": target_id,
        "details": details,
    }
    assert event_digest(prev_hash=prev, **event) == original_digest(prev_hash=prev, **event)
    head, tail = body_around_prev(**event)
    # What audit_append hashes: ASCII text, the previous hash between the halves.
    assert f"{head}{prev}{tail}".isascii()
    assert hashlib.sha256(f"{head}{prev}{tail}".encode("ascii")).hexdigest() == (
        original_digest(prev_hash=prev, **event)
    )
