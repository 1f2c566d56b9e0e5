"""The refusal a host gets before acknowledging a provider's briefing."""

from __future__ import annotations

from typing import ClassVar

from provisioner.auth.errors import PermissionDenied
from provisioner.errors import FieldError


class BriefingNotAcknowledged(PermissionDenied):
    """403: the policy asks hosts to read the provider's security card once first.

    A `PermissionDenied` because the caller is not yet allowed to host on that provider;
    the detail says exactly where to go, and `errors` names the `provider` field.
    """

    code: ClassVar[str] = "briefing-not-acknowledged"
    title: ClassVar[str] = "Acknowledge the security briefing first"

    def __init__(self, *, provider: str, url: str) -> None:
        super().__init__(
            f"Before your first {provider} meeting, read and acknowledge its security "
            f"briefing at {url}, then send this request again.",
            scope="briefing",
        )
        self.provider = provider
        self.url = url
        self.errors = (FieldError("provider", f"acknowledge the briefing at {url} first"),)
