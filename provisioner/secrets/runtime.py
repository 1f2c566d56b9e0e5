"""The secret store as the running app holds it: resolve at start-up, refresh while serving.

At start-up `load_secrets` resolves every reference (an unreachable store stops start-up
with a `SettingsError` naming the key and the store's address). While the app serves,
`watch` refreshes the cache every TTL; when a provider's secret has rotated, that provider
is rebuilt from the freshly resolved table and swapped in, so a rotated client secret is
used without a restart. Data keys are not swapped: a new data key gets a new key id and
goes through `provisioner secrets rotate-key` (see README "Secrets").
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from dataclasses import dataclass

import structlog

from provisioner.providers.base import MeetingProvider
from provisioner.providers.registry import ProviderConfigError, build_providers
from provisioner.secrets.base import SecretError, SecretRef
from provisioner.secrets.cache import CachingSecretStore, SecretsStatus
from provisioner.secrets.resolve import build_store, references, resolve_blocking, resolve_settings
from provisioner.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


@dataclass
class SecretsRuntime:
    """The store, and the settings as written (with references) for re-resolution."""

    store: CachingSecretStore
    configured: Settings

    @property
    def in_use(self) -> bool:
        """Whether any setting is a reference (else readiness has nothing to report)."""
        return bool(references(self.configured))

    def status(self) -> SecretsStatus:
        return self.store.status()

    async def watch(
        self, stop: asyncio.Event, *, providers: MutableMapping[str, MeetingProvider]
    ) -> None:
        """Refresh until `stop`; rebuild providers whose secrets changed."""

        async def on_change(changed: set[SecretRef]) -> None:
            await self.swap_providers(changed, providers=providers)

        await self.store.run(stop, on_change=on_change)

    async def swap_providers(
        self, changed: set[SecretRef], *, providers: MutableMapping[str, MeetingProvider]
    ) -> list[str]:
        """Rebuild each provider one of whose references is in `changed`; return their names."""
        refs = references(self.configured)
        names = sorted(
            {
                key.split(".")[1]
                for key, ref in refs.items()
                if key.startswith("providers.") and ref in changed
            }
        )
        if not names:
            return []
        try:
            resolved = await resolve_settings(self.configured, self.store)
            fresh = build_providers({name: resolved.providers[name] for name in names})
        except (SettingsError, SecretError, ProviderConfigError) as exc:
            # Keep serving with the providers we have; the next refresh tries again.
            log.error("secrets.providers.rebuild_failed", providers=names, reason=str(exc))
            return []
        for name, provider in fresh.items():
            old = providers.get(name)
            providers[name] = provider
            if old is not None:
                await old.aclose()
        log.info("secrets.providers.rebuilt", providers=names)
        return names

    async def aclose(self) -> None:
        await self.store.aclose()


def load_secrets(settings: Settings) -> tuple[Settings, SecretsRuntime]:
    """Resolve every reference in `settings` (synchronously; safe inside an event loop).

    Raises:
        SettingsError: a reference is malformed or unreadable, or (outside development) a
            secret is configured as a plain value.
    """
    store = build_store(settings.secrets)
    resolved = resolve_blocking(settings, store, production=settings.environment != "development")
    return resolved, SecretsRuntime(store=store, configured=settings)
