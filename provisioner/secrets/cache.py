"""The store the app uses: routes each reference to its backend and caches what it read.

Why a cache: a rotated secret must be picked up without a restart (so entries expire after
`ttl_seconds` and are read again), yet a secret store that goes down must not take the
service down with it (so an expired entry keeps serving for `max_stale_seconds` while the
backend is unreachable, and `status()` says so for /readyz). Every value read is
registered with the redaction registry, so it is scrubbed from logs and error output.

There is no lock: two coroutines that miss at once both read the backend, which is
harmless, and the store is used from more than one event loop (start-up, then the app).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import structlog

from provisioner.redaction import register_secret
from provisioner.secrets.base import SecretError, SecretRef, SecretStore, SecretUnavailable

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Entry:
    value: str
    fetched_at: float


@dataclass(frozen=True)
class SecretsStatus:
    """What readiness reports: `ok`, `degraded` (serving cached values) or `failed`."""

    state: Literal["ok", "degraded", "failed"]
    detail: str = ""


class CachingSecretStore:
    """A `SecretStore` over several backends, keyed by reference scheme."""

    name = "cache"

    def __init__(
        self,
        backends: Mapping[str, SecretStore],
        *,
        ttl_seconds: float,
        max_stale_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backends = dict(backends)
        self._ttl = ttl_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        self._entries: dict[SecretRef, _Entry] = {}
        self._failing: dict[str, str] = {}  # backend name -> reason (never a value)

    @property
    def backends(self) -> Mapping[str, SecretStore]:
        return self._backends

    @property
    def ttl_seconds(self) -> float:
        return self._ttl

    def backend_for(self, ref: SecretRef) -> SecretStore:
        backend = self._backends.get(ref.scheme)
        if backend is None:
            raise SecretUnavailable(
                f"{ref}: no {ref.scheme} store is configured (add a [secrets.{ref.scheme}] table)"
            )
        return backend

    async def get(self, ref: SecretRef) -> str:
        entry = self._entries.get(ref)
        if entry is not None and self._clock() - entry.fetched_at < self._ttl:
            return entry.value
        return await self._fetch(ref, entry)

    async def _fetch(self, ref: SecretRef, entry: _Entry | None) -> str:
        backend = self.backend_for(ref)
        try:
            value = await backend.get(ref)
        except SecretUnavailable as exc:
            self._failing[backend.name] = str(exc)
            age = None if entry is None else self._clock() - entry.fetched_at
            if entry is not None and age is not None and age <= self._ttl + self._max_stale:
                log.warning("secrets.cache.served_stale", ref=str(ref), age_seconds=round(age))
                return entry.value
            raise
        self._failing.pop(backend.name, None)
        register_secret(value)
        if entry is not None and entry.value != value:
            log.info("secrets.value.rotated", ref=str(ref))
        self._entries[ref] = _Entry(value, self._clock())
        return value

    async def refresh(self) -> set[SecretRef]:
        """Read every known reference again now; return those whose value changed."""
        changed: set[SecretRef] = set()
        for ref, entry in list(self._entries.items()):
            try:
                value = await self._fetch(ref, entry)
            except SecretError as exc:
                log.warning("secrets.refresh.failed", ref=str(ref), reason=str(exc))
                continue
            except Exception as exc:  # a bug or an unmapped backend error: not the loop's end
                log.error("secrets.refresh.failed", ref=str(ref), error_type=type(exc).__name__)
                continue
            if value != entry.value:
                changed.add(ref)
        return changed

    def status(self) -> SecretsStatus:
        """`degraded` while a backend is down but its cached values are within max_stale."""
        if not self._failing:
            return SecretsStatus("ok")
        now = self._clock()
        limit = self._ttl + self._max_stale
        expired = [
            ref
            for ref, entry in self._entries.items()
            if ref.scheme in self._failing_schemes() and now - entry.fetched_at > limit
        ]
        reasons = "; ".join(sorted(self._failing.values()))
        if expired:
            return SecretsStatus("failed", f"{reasons}; cached values past max_stale")
        return SecretsStatus("degraded", f"{reasons}; serving cached values")

    def _failing_schemes(self) -> set[str]:
        return {scheme for scheme, b in self._backends.items() if b.name in self._failing}

    async def run(
        self,
        stop: asyncio.Event,
        *,
        on_change: Callable[[set[SecretRef]], Awaitable[object]] | None = None,
    ) -> None:
        """Refresh every `ttl_seconds` until `stop` is set, so rotation and outages are seen
        even when nothing asks for a secret."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._ttl)
                return
            except TimeoutError:
                pass
            changed = await self.refresh()
            if changed and on_change is not None:
                await on_change(changed)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
