"""Load meeting providers through entry points, our own included.

First-party providers register under `provisioner.providers` exactly as a third party's
would. One instance is built per *configured* provider from its own settings table; a
configured provider that fails to load or validate stops start-up with a message naming
the key, and one that is installed but not configured is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

import structlog
from pydantic import BaseModel, ValidationError

from provisioner.errors import FieldError
from provisioner.providers.base import MeetingProvider
from provisioner.providers.errors import ProviderUnknown

log = structlog.get_logger(__name__)

GROUP = "provisioner.providers"


class ProviderFactory(Protocol):
    """What an entry point must name: a class with a config model and a constructor."""

    config_model: type[BaseModel]

    @classmethod
    def from_config(cls, config: Any) -> MeetingProvider: ...


class ProviderConfigError(Exception):
    """A configured provider cannot be built; the message names the settings key."""


def build_providers(configured: Mapping[str, Mapping[str, Any]]) -> dict[str, MeetingProvider]:
    """Instantiate every configured provider, or raise naming what is wrong."""
    available = {entry.name: entry for entry in entry_points(group=GROUP)}
    providers: dict[str, MeetingProvider] = {}
    for name, table in configured.items():
        entry = available.get(name)
        if entry is None:
            raise ProviderConfigError(
                f"providers.{name}: no provider of that name is installed "
                f"(installed: {', '.join(sorted(available)) or 'none'})"
            )
        try:
            factory = cast(ProviderFactory, entry.load())
        except Exception as exc:  # a broken plugin must name itself, whatever it raised
            raise ProviderConfigError(
                f"providers.{name}: cannot load {entry.value}: {type(exc).__name__}"
            ) from exc
        try:
            config = factory.config_model.model_validate(dict(table))
        except ValidationError as exc:
            problems = "; ".join(
                ".".join(["providers", name, *(str(p) for p in err["loc"])])
                + ": "
                + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
                for err in exc.errors()
            )
            raise ProviderConfigError(problems) from None
        try:
            provider = factory.from_config(config)
        except ValueError as exc:
            raise ProviderConfigError(f"providers.{name}: {exc}") from None
        if not isinstance(provider, MeetingProvider):
            raise ProviderConfigError(
                f"providers.{name}: {entry.value} does not implement the MeetingProvider protocol"
            )
        providers[name] = provider
    for name in sorted(set(available) - set(configured)):
        log.info("provider.skipped", provider=name, reason="not configured")
    return providers


def pick(providers: Mapping[str, MeetingProvider], name: str) -> MeetingProvider:
    if name in providers:
        return providers[name]
    configured = ", ".join(sorted(providers)) or "none"
    error = ProviderUnknown(
        f"provider {name!r} is not configured here; configured: {configured}", provider=name
    )
    error.errors = (FieldError("provider", f"must be one of: {configured}"),)
    raise error
