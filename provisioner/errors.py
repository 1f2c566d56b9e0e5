"""The root of every error provisioner raises on purpose.

    ProvisionerError
    ├── InvalidRequest            (meetings/errors.py: bad input the schema could not catch)
    ├── PolicyViolation           (policy/errors.py: a request loosens a locked setting)
    ├── MeetingNotFound           (meetings/errors.py)
    ├── IdempotencyKeyReused      (idempotency/errors.py: same key, different body)
    ├── IdempotencyKeyInFlight    (idempotency/errors.py: first request still running)
    ├── IdempotencyKeyLost        (idempotency/errors.py: the claim vanished mid-request)
    ├── ProviderError             (providers/errors.py: retriable, rejected, auth, not found)
    ├── ChannelError              (delivery/base.py: retriable or rejected)
    └── AuthenticationFailed / PermissionDenied  (auth/errors.py)

Services raise these and know nothing of HTTP; `problems.py` holds the only table from
class to HTTP status and renders them as RFC 9457 problem documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldError:
    """One field of the request that is wrong, and why (never echoes secret values)."""

    field: str
    reason: str


class ProvisionerError(Exception):
    """Base for deliberate errors; `code` is stable and becomes the problem `type`."""

    code: ClassVar[str] = "provisioner-error"
    title: ClassVar[str] = "Request could not be completed"

    def __init__(self, detail: str, *, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
