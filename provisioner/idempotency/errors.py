"""Idempotency-key misuse."""

from __future__ import annotations

from typing import ClassVar

from provisioner.errors import ProvisionerError


class IdempotencyKeyReused(ProvisionerError):
    """The key was used before with a different request body."""

    code: ClassVar[str] = "idempotency-key-reused"
    title: ClassVar[str] = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInFlight(ProvisionerError):
    """A request with this key is still being processed."""

    code: ClassVar[str] = "idempotency-key-in-flight"
    title: ClassVar[str] = "A request with this Idempotency-Key is still in progress"
