"""Typed provider failures; whether to retry is decided from the class alone.

ProviderError
├── ProviderRetriable(retry_after)   timeouts, 429, 502/503/504
├── ProviderRejected(field)          4xx the provider will repeat
├── ProviderAuthFailed               our credentials were refused
├── ProviderNotFound                 the meeting is gone
├── ProviderUnknown                  the request names a provider that is not configured
└── ProviderUnsupported(feature)     the provider has no API for this operation
"""

from __future__ import annotations

from typing import ClassVar

from provisioner.errors import ProvisionerError


class ProviderError(ProvisionerError):
    code: ClassVar[str] = "provider-error"
    title: ClassVar[str] = "The meeting provider failed"

    def __init__(self, detail: str, *, provider: str) -> None:
        super().__init__(detail)
        self.provider = provider


class ProviderRetriable(ProviderError):
    code: ClassVar[str] = "provider-unavailable"
    title: ClassVar[str] = "The meeting provider is unavailable; try again later"

    def __init__(self, detail: str, *, provider: str, retry_after: float | None = None) -> None:
        super().__init__(detail, provider=provider)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    code: ClassVar[str] = "provider-rejected"
    title: ClassVar[str] = "The meeting provider refused the request"

    def __init__(self, detail: str, *, provider: str, field: str | None = None) -> None:
        super().__init__(detail, provider=provider)
        self.field = field


class ProviderAuthFailed(ProviderError):
    code: ClassVar[str] = "provider-auth-failed"
    title: ClassVar[str] = "The meeting provider refused our credentials"


class ProviderNotFound(ProviderError):
    code: ClassVar[str] = "provider-meeting-not-found"
    title: ClassVar[str] = "The meeting no longer exists at the provider"


class ProviderUnknown(ProviderError):
    code: ClassVar[str] = "unknown-provider"
    title: ClassVar[str] = "No such meeting provider is configured"


class ProviderUnsupported(ProviderError):
    """The provider has no API for the operation; say so plainly instead of pretending."""

    code: ClassVar[str] = "provider-feature-unsupported"
    title: ClassVar[str] = "The meeting provider cannot do this"

    def __init__(self, detail: str, *, provider: str, feature: str) -> None:
        super().__init__(detail, provider=provider)
        self.feature = feature
