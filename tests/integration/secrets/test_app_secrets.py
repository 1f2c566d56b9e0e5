"""The app with its secrets in OpenBao: references resolved at start-up, readiness while the
store is down, a clear error when it is down at start, rotation without a restart."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner.app import build_state, close_state, create_app
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.secrets.base import SecretRef
from provisioner.settings import Settings, SettingsError
from tests.conftest import make_settings
from tests.factories import meeting_body
from tests.integration.secrets.servers import BaoServer, free_port


def vault_settings(
    tmp_path: Path,
    database_url: str,
    issuer: LocalIssuer,
    jitsi: dict[str, Any],
    *,
    address: str,
    token: str,
    **overrides: Any,
) -> Settings:
    token_file = tmp_path / "bao-token"
    token_file.write_text(token)
    return make_settings(
        tmp_path,
        database_url,
        issuer,
        jitsi | {"app_secret": "vault:secret/provisioner#jitsi_app_secret"},
        security={"data_keys": {"k1": "vault:secret/provisioner#data_key_k1"}},
        secrets={
            "cache_ttl_seconds": 60,
            "max_stale_seconds": 600,
            "vault": {"address": address, "auth": "token", "token": f"file:{token_file}"},
        },
        **overrides,
    )


def seed(bao: BaoServer, **extra: str) -> dict[str, str]:
    values = {
        "jitsi_app_secret": secrets.token_hex(32),
        "data_key_k1": base64.b64encode(secrets.token_bytes(32)).decode(),
        **extra,
    }
    bao.write("provisioner", **values)
    return values


class TestStartUp:
    async def test_references_resolve_and_the_flow_works(
        self,
        bao: BaoServer,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
    ) -> None:
        values = seed(bao)
        settings = vault_settings(
            tmp_path, database_url, issuer, jitsi_config, address=bao.address, token=bao.root_token
        )
        state = build_state(settings)
        try:
            assert (
                state.settings.security.data_keys["k1"].get_secret_value() == values["data_key_k1"]
            )
            app = create_app(settings, state=state, run_worker=False)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
            ) as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 200
                assert ready.json()["checks"]["secrets"] == "ok"
                created = await client.post(
                    "/api/v1/meetings", json=meeting_body(), headers=host_headers
                )
                assert created.status_code == 201

                bao.stop()
                assert state.secrets is not None
                await state.secrets.store.refresh()
                degraded = await client.get("/readyz")
                assert degraded.status_code == 200
                assert degraded.json()["status"] == "degraded"
                assert degraded.json()["checks"]["secrets"].startswith("degraded")
                again = await client.post(
                    "/api/v1/meetings", json=meeting_body(), headers=host_headers
                )
                assert again.status_code == 201  # the service keeps working on cached values
        finally:
            await close_state(state)

    def test_store_down_at_start_names_the_store(
        self,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
    ) -> None:
        address = f"http://127.0.0.1:{free_port()}"
        settings = vault_settings(
            tmp_path, database_url, issuer, jitsi_config, address=address, token="t" * 20
        )
        with pytest.raises(SettingsError) as caught:
            build_state(settings)
        message = str(caught.value)
        assert address in message
        assert "unreachable" in message
        assert "security.data_keys.k1" in message or "providers.jitsi.app_secret" in message

    def test_missing_secret_names_key_and_reference(
        self,
        bao: BaoServer,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
    ) -> None:
        bao.write("provisioner", data_key_k1=base64.b64encode(secrets.token_bytes(32)).decode())
        settings = vault_settings(
            tmp_path, database_url, issuer, jitsi_config, address=bao.address, token=bao.root_token
        )
        with pytest.raises(SettingsError, match="providers.jitsi.app_secret.*jitsi_app_secret"):
            build_state(settings)


class TestRotationWithoutRestart:
    async def test_rotated_provider_secret_swaps_the_provider(
        self,
        bao: BaoServer,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
    ) -> None:
        values = seed(bao)
        settings = vault_settings(
            tmp_path, database_url, issuer, jitsi_config, address=bao.address, token=bao.root_token
        )
        state = build_state(settings)
        try:
            assert state.secrets is not None
            before = state.providers["jitsi"]
            seed(bao, jitsi_app_secret=secrets.token_hex(32), data_key_k1=values["data_key_k1"])
            changed = await state.secrets.store.refresh()
            assert SecretRef.parse("vault:secret/provisioner#jitsi_app_secret") in changed
            providers = state.providers
            assert isinstance(providers, dict)
            assert await state.secrets.swap_providers(changed, providers=providers) == ["jitsi"]
            assert state.providers["jitsi"] is not before
        finally:
            await close_state(state)
