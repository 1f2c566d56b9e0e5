"""VaultSecretStore against a real OpenBao dev server: KV v2, AppRole, renewal, rotation,
outages at start and later."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provisioner.secrets.base import SecretNotFound, SecretRef, SecretUnavailable
from provisioner.secrets.cache import CachingSecretStore
from provisioner.secrets.env import EnvSecretStore
from provisioner.secrets.file import FileSecretStore
from provisioner.secrets.vault import VaultSecretStore
from provisioner.settings import VaultSettings
from tests.integration.secrets.servers import BaoServer

REF = SecretRef.parse("vault:secret/provisioner#zoom_client_secret")


async def bootstrap(reference: str) -> str:
    ref = SecretRef.parse(reference)
    return await (EnvSecretStore() if ref.scheme == "env" else FileSecretStore()).get(ref)


def token_store(bao: BaoServer, tmp_path: Path, **kwargs: object) -> VaultSecretStore:
    token_file = tmp_path / "vault-token"
    token_file.write_text(bao.root_token + "\n")
    settings = VaultSettings(address=bao.address, auth="token", token=f"file:{token_file}")
    return VaultSecretStore(settings, bootstrap=bootstrap, **kwargs)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def setup_approle(bao: BaoServer, *, ttl: str = "1h") -> tuple[str, str]:
    root = bao.client()
    root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(
        "provisioner-read", 'path "secret/data/provisioner*" { capabilities = ["read"] }'
    )
    root.auth.approle.create_or_update_approle(
        "provisioner",
        token_policies=["provisioner-read"],
        token_ttl=ttl,
        token_max_ttl="1h",
    )
    role_id = root.auth.approle.read_role_id("provisioner")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("provisioner")["data"]["secret_id"]
    return role_id, secret_id


class TestKvV2:
    async def test_reads_a_field_with_a_token(self, bao: BaoServer, tmp_path: Path) -> None:
        bao.write("provisioner", zoom_client_secret="zoom-secret-1234", other="x")
        store = token_store(bao, tmp_path)
        try:
            assert await store.get(REF) == "zoom-secret-1234"
            with pytest.raises(SecretNotFound):
                await store.get(SecretRef.parse("vault:secret/provisioner#missing"))
            with pytest.raises(SecretNotFound):
                await store.get(SecretRef.parse("vault:secret/nothing-here#field"))
        finally:
            await store.aclose()


class TestAppRole:
    async def test_logs_in_with_role_and_secret_id(
        self, bao: BaoServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bao.write("provisioner", zoom_client_secret="approle-read-secret")
        role_id, secret_id = setup_approle(bao)
        monkeypatch.setenv("TEST_ROLE_ID", role_id)
        monkeypatch.setenv("TEST_SECRET_ID", secret_id)
        settings = VaultSettings(
            address=bao.address,
            auth="approle",
            role_id="env:TEST_ROLE_ID",
            secret_id="env:TEST_SECRET_ID",
        )
        store = VaultSecretStore(settings, bootstrap=bootstrap)
        try:
            assert await store.get(REF) == "approle-read-secret"
            assert store.logins == 1
        finally:
            await store.aclose()

    async def test_wrong_secret_id_is_a_clear_error(
        self, bao: BaoServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        role_id, _ = setup_approle(bao)
        monkeypatch.setenv("TEST_ROLE_ID", role_id)
        monkeypatch.setenv("TEST_SECRET_ID", "not-the-secret-id")
        settings = VaultSettings(
            address=bao.address,
            auth="approle",
            role_id="env:TEST_ROLE_ID",
            secret_id="env:TEST_SECRET_ID",
        )
        store = VaultSecretStore(settings, bootstrap=bootstrap)
        with pytest.raises(SecretUnavailable, match="refused approle login") as caught:
            await store.get(REF)
        assert "not-the-secret-id" not in str(caught.value)
        await store.aclose()

    async def test_token_is_renewed_before_it_expires(
        self, bao: BaoServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        bao.write("provisioner", zoom_client_secret="renewal-secret")
        role_id, secret_id = setup_approle(bao, ttl="60s")
        monkeypatch.setenv("TEST_ROLE_ID", role_id)
        monkeypatch.setenv("TEST_SECRET_ID", secret_id)
        clock = Clock()
        settings = VaultSettings(
            address=bao.address,
            auth="approle",
            role_id="env:TEST_ROLE_ID",
            secret_id="env:TEST_SECRET_ID",
        )
        store = VaultSecretStore(settings, bootstrap=bootstrap, clock=clock)
        try:
            await store.get(REF)
            assert (store.renewals, store.logins) == (0, 1)
            clock.offset = 31  # past half the TTL
            assert await store.get(REF) == "renewal-secret"
            assert (store.renewals, store.logins) == (1, 1)  # renewed, not logged in again
        finally:
            await store.aclose()


class TestRotationAndOutage:
    async def test_rotated_value_is_picked_up_after_ttl(
        self, bao: BaoServer, tmp_path: Path
    ) -> None:
        bao.write("provisioner", zoom_client_secret="before-rotation")
        clock = Clock()
        store = CachingSecretStore(
            {"vault": token_store(bao, tmp_path)},
            ttl_seconds=60,
            max_stale_seconds=600,
            clock=clock,
        )
        try:
            assert await store.get(REF) == "before-rotation"
            bao.write("provisioner", zoom_client_secret="after-rotation")
            assert await store.get(REF) == "before-rotation"  # still cached
            clock.offset = 61
            assert await store.get(REF) == "after-rotation"
        finally:
            await store.aclose()

    async def test_down_later_serves_cached_values_then_fails(
        self, bao: BaoServer, tmp_path: Path
    ) -> None:
        bao.write("provisioner", zoom_client_secret="cached-through-outage")
        clock = Clock()
        store = CachingSecretStore(
            {"vault": token_store(bao, tmp_path)},
            ttl_seconds=60,
            max_stale_seconds=300,
            clock=clock,
        )
        try:
            await store.get(REF)
            bao.stop()
            clock.offset = 120
            assert await store.get(REF) == "cached-through-outage"
            status = store.status()
            assert status.state == "degraded"
            assert bao.address in status.detail
            clock.offset = 400
            with pytest.raises(SecretUnavailable):
                await store.get(REF)
            assert store.status().state == "failed"
        finally:
            await store.aclose()
