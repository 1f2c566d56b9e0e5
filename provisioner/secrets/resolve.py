"""Settings hold references; this turns them into values at start-up (and on refresh).

Any string in the settings -- a `SecretStr` or a plain string, at any depth, provider
tables included -- that starts with `env:`, `file:`, `vault:` or `aws:` is a reference and
is replaced by the value read through the store. The `[secrets]` section itself is left
alone: it holds the store's own bootstrap credentials.

Outside development, a key that names a secret (`password`, `client_secret`, `app_secret`,
`data_keys.*`, ...) must hold a reference: a value pasted into the config file or the
environment stops start-up, naming the key. Keys ending in `_file`, `_path`, `_url`,
`_dir`, `_mount` or `_name` hold locations or names, not secrets, and are exempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from provisioner.redaction import is_secret_key, register_secrets
from provisioner.secrets.base import SecretError, SecretRef, SecretStore, is_reference
from provisioner.secrets.cache import CachingSecretStore
from provisioner.secrets.env import EnvSecretStore
from provisioner.secrets.file import FileSecretStore
from provisioner.settings import SecretsSettings, Settings, SettingsError

T = TypeVar("T")
Resolver = Callable[[str, str], Awaitable[str]]  # (settings key, reference) -> value

_LOCATION_SUFFIXES = ("_file", "_path", "_url", "_dir", "_mount", "_seconds", "_name")
_SKIPPED_SECTIONS = frozenset({"secrets"})


def build_store(settings: SecretsSettings) -> CachingSecretStore:
    """The app's store: env and file always, Vault and AWS when configured."""
    env, file = EnvSecretStore(), FileSecretStore()

    async def bootstrap(reference: str) -> str:
        ref = SecretRef.parse(reference)
        return await (env if ref.scheme == "env" else file).get(ref)

    backends: dict[str, SecretStore] = {"env": env, "file": file}
    # Imported only when configured: hvac and boto3 are about 0.6 s of every start-up
    # (`bench/startup.py`) for installs that use neither.
    if settings.vault is not None:
        from provisioner.secrets.vault import VaultSecretStore

        backends["vault"] = VaultSecretStore(settings.vault, bootstrap=bootstrap)
    if settings.aws is not None:
        from provisioner.secrets.aws import AwsSecretStore

        backends["aws"] = AwsSecretStore(settings.aws)
    return CachingSecretStore(
        backends,
        ttl_seconds=settings.cache_ttl_seconds,
        max_stale_seconds=settings.max_stale_seconds,
    )


def references(settings: Settings) -> dict[str, SecretRef]:
    """Every reference in the settings, by dotted key (`providers.zoom.client_secret`)."""
    found: dict[str, SecretRef] = {}
    _walk(settings, "", lambda key, value: found.setdefault(key, _parse(key, value)))
    return found


def plain_secrets(settings: Settings) -> list[str]:
    """Keys that name a secret but hold a value instead of a reference."""
    found: list[str] = []

    def check(key: str, value: str) -> None:
        leaf = key.rsplit(".", 1)[-1]
        named_secret = key.startswith("security.data_keys.") or (
            is_secret_key(leaf) and not leaf.endswith(_LOCATION_SUFFIXES)
        )
        if named_secret and value and not is_reference(value):
            found.append(key)

    _walk(settings, "", check, everything=True)
    return sorted(found)


async def resolve_settings(settings: Settings, store: SecretStore) -> Settings:
    """Return `settings` with every reference replaced by its value.

    Raises:
        SettingsError: a reference is malformed, missing or its store is unreachable; the
            message names the key, the reference and the store's address.
    """

    async def read(key: str, reference: str) -> str:
        ref = _parse(key, reference)
        try:
            return await store.get(ref)
        except SecretError as exc:
            raise SettingsError(f"invalid configuration:\n  {key}: {exc}") from None

    resolved = await _resolve(settings, "", read)
    assert isinstance(resolved, Settings)  # noqa: S101
    return resolved


def resolve_blocking(
    settings: Settings, store: CachingSecretStore, *, production: bool
) -> Settings:
    """`resolve_settings` for synchronous start-up code, even inside a running event loop
    (it runs on its own loop in a helper thread); also enforces references in production."""
    if production and (plain := plain_secrets(settings)):
        raise SettingsError(
            "invalid configuration:\n"
            + "\n".join(
                f"  {key}: must be a secret reference (env:, file:, vault:, aws:)" for key in plain
            )
        )
    # Data keys and other plain values are secrets too: scrub them from logs either way.
    register_secrets(_plain_values(settings))
    if not references(settings):
        return settings
    return _run_in_thread(lambda: resolve_settings(settings, store))


def _run_in_thread(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _parse(key: str, value: str) -> SecretRef:
    try:
        return SecretRef.parse(value)
    except ValueError as exc:
        raise SettingsError(f"invalid configuration:\n  {key}: {exc}") from None


def _plain_values(settings: Settings) -> list[str]:
    values: list[str] = []

    def collect(key: str, value: str) -> None:
        leaf = key.rsplit(".", 1)[-1]
        if key.startswith("security.data_keys.") or (
            is_secret_key(leaf) and not leaf.endswith(_LOCATION_SUFFIXES)
        ):
            if not is_reference(value):
                values.append(value)

    _walk(settings, "", collect, everything=True)
    return values


def _walk(
    value: Any, key: str, visit: Callable[[str, str], object], *, everything: bool = False
) -> None:
    """Call `visit(key, text)` for every reference (or, with `everything`, every string)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            if not key and name in _SKIPPED_SECTIONS:
                continue
            _walk(getattr(value, name), _join(key, name), visit, everything=everything)
    elif isinstance(value, dict):
        for name, item in value.items():
            _walk(item, _join(key, str(name)), visit, everything=everything)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{key}[{index}]", visit, everything=everything)
    else:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and (everything or is_reference(text)):
            visit(key, text)


async def _resolve(value: Any, key: str, read: Resolver) -> Any:
    if isinstance(value, BaseModel):
        updates: dict[str, Any] = {}
        for name in type(value).model_fields:
            if not key and name in _SKIPPED_SECTIONS:
                continue
            item = getattr(value, name)
            new = await _resolve(item, _join(key, name), read)
            if new is not item:
                updates[name] = new
        return value.model_copy(update=updates) if updates else value
    if isinstance(value, dict):
        items = {k: await _resolve(v, _join(key, str(k)), read) for k, v in value.items()}
        changed = any(items[k] is not v for k, v in value.items())
        return items if changed else value
    if isinstance(value, list | tuple):
        resolved = [await _resolve(v, f"{key}[{i}]", read) for i, v in enumerate(value)]
        if all(a is b for a, b in zip(resolved, value, strict=True)):
            return value
        return type(value)(resolved)
    if isinstance(value, SecretStr) and is_reference(value.get_secret_value()):
        return SecretStr(await read(key, value.get_secret_value()))
    if isinstance(value, str) and is_reference(value):
        return await read(key, value)
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
