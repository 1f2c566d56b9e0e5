"""Keeps secrets out of logs, audit details and error output.

The plan is that secrets are never passed to a logger or an audit event in the first place;
this module is the backstop. It drops values under keys that name a secret and scrubs
values that look like one (a `jwt=`, `pwd=`, `tk=`, `token=` or `passcode=` query
parameter, a bearer token, a JWT), and every
value registered as a currently known secret (everything read from the secret store, data
keys, provider tokens): those are removed wherever they appear in free text.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(passcode|password|passwd|secret|token|jwt|join_url|joinurl|authorization|api_key|"
    r"private_key|service_account_key|cookie|credential)",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(?:jwt=)[^\s&\"'<>]+"  # a token in a join link
    # Any other query value that is a way into a meeting (the ones a notice refuses,
    # delivery/notices.py): Zoom `pwd`, Teams/Webex `tk`, `token`, `passcode`, `password`.
    r"|(?<=[?&])(?i:pwd|passcode|password|token|tk)=[^\s&\"'<>]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"  # an Authorization header value
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # a bare JWT
    r"|pal\.[0-9a-f]{32}\.[A-Za-z0-9_-]+"  # an emergency action link (actions/tokens.py)
)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a field named `key` holds a secret. Field names come from code and repeat
    on every log line and audit event, so the answer is remembered."""
    return bool(_SECRET_KEY.search(key))


# Shorter values would mangle ordinary words and numbers; secrets are longer than this.
MIN_KNOWN_SECRET_LENGTH = 6

_known_lock = threading.Lock()
_known_values: set[str] = set()
# Rebuilt under the lock on registration; readers take the current pattern without locking.
_known_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Remember `value` so that `scrub_text` removes it wherever it appears (thread-safe)."""
    register_secrets((value,))


def register_secrets(values: Iterable[str]) -> None:
    global _known_pattern
    fresh = {v for v in values if len(v) >= MIN_KNOWN_SECRET_LENGTH}
    with _known_lock:
        if fresh <= _known_values:
            return
        _known_values.update(fresh)
        # Longest first, so a secret that contains another is removed whole.
        ordered = sorted(_known_values, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def forget_secrets() -> None:
    """Clear the registry (tests)."""
    global _known_pattern
    with _known_lock:
        _known_values.clear()
        _known_pattern = None


def local_scrubber(
    values: Iterable[str], *, min_length: int = MIN_KNOWN_SECRET_LENGTH
) -> Callable[[str], str]:
    """A `scrub_text` that also removes `values`, for one piece of work only.

    Unlike `register_secrets`, nothing is remembered process-wide: use it for secrets that
    matter to one report or one request (a meeting's join links and passcodes), which would
    otherwise pile up in the registry and redact look-alike text in unrelated logs.
    """
    ordered = sorted({v for v in values if len(v) >= min_length}, key=len, reverse=True)
    if not ordered:
        return scrub_text
    pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def scrub(text: str) -> str:
        return scrub_text(pattern.sub(REDACTED, text))

    return scrub


def scrub_text(text: str) -> str:
    """Replace every known secret value and anything that looks like a token."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
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
