"""HashiCorp Vault / OpenBao through `hvac`: KV v2 reads with token, AppRole or Kubernetes
auth, and token renewal.

hvac is synchronous, so every call runs in a worker thread, and one lock serialises calls
that may swap the client's token (login, renewal) with the reads that use it. A renewable
token is renewed once less than half of its TTL remains; a token that can no longer be
renewed (or that the server refuses with 403) is replaced by logging in again with the
configured method -- a static `token` cannot log in again, so it simply fails loudly.

References are `vault:<mount>/<path>#<field>`: `vault:kv/provisioner#zoom_client_secret`
reads field `zoom_client_secret` of the KV v2 secret `provisioner` on mount `kv`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import hvac
import hvac.exceptions
import requests
import structlog

from provisioner.secrets.base import SecretNotFound, SecretRef, SecretUnavailable, pick_field
from provisioner.settings import VaultSettings

log = structlog.get_logger(__name__)

# Reads a bootstrap credential (a Vault token, an AppRole secret id) from env: or file:.
BootstrapReader = Callable[[str], Awaitable[str]]


class VaultSecretStore:
    """Reads KV v2 secrets; see the module docstring for auth and renewal."""

    name = "vault"

    def __init__(
        self,
        settings: VaultSettings,
        *,
        bootstrap: BootstrapReader,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._bootstrap = bootstrap
        self._clock = clock
        self._lock = threading.Lock()
        self._client = hvac.Client(
            url=settings.address,
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]  # hvac accepts floats
            verify=str(settings.ca_file) if settings.ca_file else True,
            namespace=settings.namespace,
        )
        self._logged_in = False
        self._renew_at: float | None = None  # monotonic time to renew; None: never expires
        self._renewable = False
        self.renewals = 0
        self.logins = 0

    @property
    def address(self) -> str:
        return self._settings.address

    async def login(self) -> None:
        """Authenticate with the configured method (also checks that Vault is reachable).

        Raises:
            SecretUnavailable: Vault cannot be reached or refused the credentials.
        """
        credentials = await self._credentials()
        await asyncio.to_thread(self._locked, self._login, credentials)

    async def get(self, ref: SecretRef) -> str:
        if not self._logged_in:
            await self.login()
        if self._renew_at is not None and self._clock() >= self._renew_at:
            await self._renew_or_login()
        try:
            data = await asyncio.to_thread(self._locked, self._read, ref)
        except hvac.exceptions.Forbidden:
            if self._settings.auth == "token":
                raise SecretUnavailable(f"{ref}: {self.address} refused the token (403)") from None
            await self.login()  # the token expired or was revoked: log in once more
            try:
                data = await asyncio.to_thread(self._locked, self._read, ref)
            except hvac.exceptions.Forbidden:
                raise SecretUnavailable(f"{ref}: {self.address} refused access (403)") from None
        return pick_field(data, ref, where=f"{self.address} {ref.path}")

    async def aclose(self) -> None:
        adapter = getattr(self._client, "adapter", None)
        if adapter is not None:
            await asyncio.to_thread(adapter.close)

    # -- internals (run in a worker thread, under the lock) ------------------------------

    def _locked(self, func: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            try:
                return func(*args)
            except requests.exceptions.RequestException as exc:
                raise SecretUnavailable(
                    f"vault at {self.address} is unreachable ({type(exc).__name__})"
                ) from None
            except (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError) as exc:
                raise SecretUnavailable(
                    f"vault at {self.address} is not serving ({type(exc).__name__})"
                ) from None
            except (hvac.exceptions.InvalidPath, hvac.exceptions.Forbidden):
                raise  # the callers say what a missing path or a refused token means
            except hvac.exceptions.VaultError as exc:
                # Anything else Vault (or a proxy before it) answers -- 502, 504, 429, 401 --
                # is an outage to ride out on cached values, not a crash of the refresh
                # loop or a traceback at start-up.
                raise SecretUnavailable(
                    f"vault at {self.address} answered {type(exc).__name__}"
                ) from None

    async def _credentials(self) -> dict[str, str]:
        settings = self._settings
        if settings.auth == "token":
            assert settings.token is not None  # noqa: S101 (validated in VaultSettings)
            return {"token": await self._bootstrap(settings.token)}
        if settings.auth == "approle":
            assert settings.role_id is not None and settings.secret_id is not None  # noqa: S101
            return {
                "role_id": await self._bootstrap(settings.role_id),
                "secret_id": await self._bootstrap(settings.secret_id),
            }
        jwt_path = str(settings.kubernetes_jwt_file)
        return {"jwt": await self._bootstrap(f"file:{jwt_path}")}

    def _login(self, credentials: dict[str, str]) -> None:
        settings = self._settings
        try:
            if settings.auth == "token":
                self._client.token = credentials["token"]
            elif settings.auth == "approle":
                self._client.auth.approle.login(
                    role_id=credentials["role_id"],
                    secret_id=credentials["secret_id"],
                    mount_point=settings.approle_mount,
                )
            else:
                self._client.auth.kubernetes.login(
                    role=settings.kubernetes_role,
                    jwt=credentials["jwt"],
                    mount_point=settings.kubernetes_mount,
                )
            info = self._client.auth.token.lookup_self()["data"]
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest) as exc:
            raise SecretUnavailable(
                f"vault at {self.address} refused {settings.auth} login ({type(exc).__name__})"
            ) from None
        self._schedule(ttl=int(info.get("ttl") or 0), renewable=bool(info.get("renewable")))
        self._logged_in = True
        self.logins += 1
        log.info("secrets.vault.logged_in", method=settings.auth, address=self.address)

    def _schedule(self, *, ttl: int, renewable: bool) -> None:
        self._renewable = renewable
        self._renew_at = None if ttl <= 0 else self._clock() + ttl / 2

    async def _renew_or_login(self) -> None:
        if self._renewable:
            try:
                await asyncio.to_thread(self._locked, self._renew)
                return
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
                log.warning("secrets.vault.renewal_refused", address=self.address)
        if self._settings.auth == "token":
            self._renew_at = None  # nothing else to try; reads fail loudly when it expires
            return
        await self.login()

    def _renew(self) -> None:
        auth = self._client.auth.token.renew_self()["auth"]
        self._schedule(
            ttl=int(auth.get("lease_duration") or 0), renewable=bool(auth.get("renewable"))
        )
        self.renewals += 1
        log.info("secrets.vault.token_renewed", address=self.address)

    def _read(self, ref: SecretRef) -> dict[str, Any]:
        mount, _, path = ref.path.strip("/").partition("/")
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            raise SecretNotFound(f"{ref}: no such secret at {self.address}") from None
        data = response["data"]["data"]
        assert isinstance(data, dict)  # noqa: S101 (KV v2 always answers a map)
        return data
