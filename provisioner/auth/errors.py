"""Authentication and authorisation failures (401 and 403)."""

from __future__ import annotations

from typing import ClassVar

from provisioner.errors import ProvisionerError


class AuthenticationFailed(ProvisionerError):
    """No credentials, or credentials we cannot trust. The detail never echoes the token."""

    code: ClassVar[str] = "authentication-required"
    title: ClassVar[str] = "Authentication required"


class PermissionDenied(ProvisionerError):
    code: ClassVar[str] = "permission-denied"
    title: ClassVar[str] = "Not allowed"

    def __init__(self, detail: str, *, scope: str) -> None:
        super().__init__(detail)
        self.scope = scope
