"""References, env/file stores, the cache's stale rules, the redaction registry and the
production rule for plain secrets -- no servers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from provisioner.logs import configure_logging
from provisioner.redaction import REDACTED, forget_secrets, register_secret, scrub_text
from provisioner.secrets.base import SecretNotFound, SecretRef, SecretUnavailable, is_reference
from provisioner.secrets.cache import CachingSecretStore
from provisioner.secrets.env import EnvSecretStore
from provisioner.secrets.file import FileSecretStore
from provisioner.secrets.resolve import plain_secrets, references
from provisioner.secrets.runtime import load_secrets
from provisioner.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    yield
    forget_secrets()


class TestReferences:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("env:ZOOM_SECRET", SecretRef("env", "ZOOM_SECRET")),
            ("file:/run/secrets/zoom#key", SecretRef("file", "/run/secrets/zoom", "key")),
            ("vault:kv/provisioner#zoom", SecretRef("vault", "kv/provisioner", "zoom")),
            (
                "aws:provisioner/zoom#client_secret",
                SecretRef("aws", "provisioner/zoom", "client_secret"),
            ),
        ],
    )
    def test_parse(self, text: str, expected: SecretRef) -> None:
        assert SecretRef.parse(text) == expected
        assert str(expected) == text

    @pytest.mark.parametrize(
        "text", ["plain", "ftp:x", "env:", "vault:kv#x", "vault:kv/path", "file:/x#"]
    )
    def test_refuses_malformed(self, text: str) -> None:
        with pytest.raises(ValueError):
            SecretRef.parse(text)

    def test_is_reference(self) -> None:
        assert is_reference("vault:kv/x#y")
        assert not is_reference("https://example.com")


class TestEnvAndFile:
    async def test_env_whole_and_json_field(self) -> None:
        store = EnvSecretStore({"A": "alpha-value", "J": json.dumps({"k": "json-value"})})
        assert await store.get(SecretRef.parse("env:A")) == "alpha-value"
        assert await store.get(SecretRef.parse("env:J#k")) == "json-value"
        with pytest.raises(SecretNotFound):
            await store.get(SecretRef.parse("env:MISSING"))

    async def test_file_whole_and_json_field(self, tmp_path: Path) -> None:
        (tmp_path / "s").write_text("file-value\n")
        (tmp_path / "j").write_text(json.dumps({"k": "json-file-value"}))
        store = FileSecretStore()
        assert await store.get(SecretRef.parse(f"file:{tmp_path}/s")) == "file-value"
        assert await store.get(SecretRef.parse(f"file:{tmp_path}/j#k")) == "json-file-value"
        with pytest.raises(SecretNotFound):
            await store.get(SecretRef.parse(f"file:{tmp_path}/none"))

    async def test_a_file_that_is_not_text_is_not_found_without_quoting_it(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "binary").write_bytes(b"\x91\x92secret")
        with pytest.raises(SecretNotFound, match="not UTF-8 text") as err:
            await FileSecretStore().get(SecretRef.parse(f"file:{tmp_path}/binary"))
        assert "0x91" not in str(err.value)  # the codec's message quoted a byte of it


class FlakyStore:
    name = "flaky"

    def __init__(self) -> None:
        self.value = "first-value"
        self.down = False
        self.reads = 0

    async def get(self, ref: SecretRef) -> str:
        self.reads += 1
        if self.down:
            raise SecretUnavailable(f"{ref}: flaky at 127.0.0.1:1 is unreachable")
        return self.value

    async def aclose(self) -> None:
        return None


class TestCache:
    def make(self) -> tuple[CachingSecretStore, FlakyStore, list[float]]:
        now = [0.0]
        backend = FlakyStore()
        store = CachingSecretStore(
            {"vault": backend}, ttl_seconds=10, max_stale_seconds=20, clock=lambda: now[0]
        )
        return store, backend, now

    async def test_ttl_then_reread(self) -> None:
        store, backend, now = self.make()
        ref = SecretRef.parse("vault:kv/p#f")
        assert await store.get(ref) == "first-value"
        backend.value = "second-value"
        now[0] = 9
        assert await store.get(ref) == "first-value"
        now[0] = 10
        assert await store.get(ref) == "second-value"
        assert backend.reads == 2

    async def test_stale_within_limit_then_failed(self) -> None:
        store, backend, now = self.make()
        ref = SecretRef.parse("vault:kv/p#f")
        await store.get(ref)
        backend.down = True
        now[0] = 30
        assert await store.get(ref) == "first-value"
        assert store.status().state == "degraded"
        now[0] = 31
        with pytest.raises(SecretUnavailable):
            await store.get(ref)
        assert store.status().state == "failed"
        backend.down = False
        await store.get(ref)
        assert store.status().state == "ok"

    async def test_unconfigured_backend(self) -> None:
        store, _, _ = self.make()
        with pytest.raises(SecretUnavailable, match=r"\[secrets.aws\]"):
            await store.get(SecretRef.parse("aws:x"))

    async def test_values_read_are_registered_for_redaction(self) -> None:
        store, backend, _ = self.make()
        backend.value = "registered-through-cache"
        await store.get(SecretRef.parse("vault:kv/p#f"))
        assert scrub_text("x registered-through-cache y") == f"x {REDACTED} y"


class TestRedactionRegistry:
    def test_known_values_are_scrubbed_everywhere(self) -> None:
        register_secret("canary-secret-value")
        register_secret("short")  # too short to register safely
        assert scrub_text("a canary-secret-value b short") == f"a {REDACTED} b short"

    def test_log_lines_and_exceptions(self) -> None:
        register_secret("log-canary-123456")
        stream = io.StringIO()
        configure_logging(level="INFO", fmt="json", stream=stream)
        try:
            log = structlog.get_logger("test")
            log.info(
                "thing.happened",
                note="has log-canary-123456 inside",
                nested={"x": ["log-canary-123456"]},
            )
            try:
                raise RuntimeError("boom log-canary-123456")
            except RuntimeError:
                log.exception("thing.failed")
            logging.getLogger("stdlib").warning("stdlib log-canary-123456")
        finally:
            logging.getLogger().handlers.clear()
        output = stream.getvalue()
        assert "thing.failed" in output and "stdlib" in output
        assert "log-canary-123456" not in output


class TestSettingsReferences:
    def test_references_are_found_at_any_depth(self) -> None:
        settings = Settings(
            security={"data_keys": {"k1": "vault:kv/p#k1"}},
            email={"smtp": {"password": "env:SMTP_PASSWORD"}},
            providers={"zoom": {"client_secret": "aws:p/zoom#s", "nested": {"t": "env:T"}}},
        )
        assert set(references(settings)) == {
            "security.data_keys.k1",
            "email.smtp.password",
            "providers.zoom.client_secret",
            "providers.zoom.nested.t",
        }

    def test_env_reference_resolves_through_load_secrets(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "smtp-password-value")
        settings = Settings(email={"smtp": {"password": "env:TEST_SMTP_PASSWORD"}})
        resolved, _ = load_secrets(settings)
        assert resolved.email.smtp.password is not None
        assert resolved.email.smtp.password.get_secret_value() == "smtp-password-value"
        assert "smtp-password-value" not in scrub_text("smtp-password-value")

    def test_production_refuses_plain_secrets(self) -> None:
        settings = Settings(
            environment="production",
            security={"data_keys": {"k1": "not-a-reference"}},
            providers={
                "zoom": {"client_secret": "plain", "token_url": "https://x", "client_id": "c"}
            },
        )
        assert plain_secrets(settings) == ["providers.zoom.client_secret", "security.data_keys.k1"]
        with pytest.raises(SettingsError, match="providers.zoom.client_secret"):
            load_secrets(settings)

    def test_vault_credentials_must_be_references(self) -> None:
        with pytest.raises(ValueError, match="env: or file: reference"):
            Settings(secrets={"vault": {"auth": "token", "token": "s.plaintoken"}})
