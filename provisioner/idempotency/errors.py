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


class IdempotencyKeyLost(ProvisionerError):
    """The key's record vanished while its request ran (deleted by hand, or purged).

    The request cannot store its answer under the key, so it stores nothing: the meeting
    is failed and deleted at the provider, and a retry with the same key starts afresh.
    """

    code: ClassVar[str] = "idempotency-key-lost"
    title: ClassVar[str] = "This Idempotency-Key's record vanished while the request ran"

    def __init__(self, detail: str, *, key_id: int) -> None:
        super().__init__(detail)
        self.key_id = key_id
