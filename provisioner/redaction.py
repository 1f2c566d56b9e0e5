"""Keeps secrets out of logs, audit details and error output.

The plan is that secrets are never passed to a logger or an audit event in the first place;
this module is the backstop. It drops values under keys that name a secret and scrubs
values that look like one (a `jwt=` query parameter, a bearer token, a JWT).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(passcode|password|passwd|secret|token|jwt|join_url|joinurl|authorization|api_key|"
    r"private_key|cookie|credential)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(?:jwt=)[^\s&\"'<>]+"  # a token in a join link
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"  # an Authorization header value
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # a bare JWT
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def scrub_text(text: str) -> str:
    """Replace anything in free text that looks like a token."""
    return _SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """Return a copy of `value` with secret keys dropped and token-like strings scrubbed."""
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if is_secret_key(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
