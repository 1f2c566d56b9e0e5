"""Settings: TOML under environment, and a clear stop on unknown keys or bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.settings import SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PROVISIONER_"):
            monkeypatch.delenv(name)


class TestLoadSettings:
    def test_defaults_use_embedded_sqlite(self) -> None:
        settings = load_settings()
        assert settings.database.url == "sqlite+aiosqlite:///./var/provisioner.db"
        assert settings.email.transport == "file"

    def test_example_file_loads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "PROVISIONER_CONFIG", str(REPO_ROOT / "config" / "provisioner.example.toml")
        )
        settings = load_settings()
        assert settings.email.smtp.security == "starttls"
        assert settings.providers["jitsi"]["app_id"] == "provisioner"

    def test_environment_overrides_file(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        config = tmp_path / "c.toml"
        config.write_text('[database]\nurl = "sqlite:///./a.db"\n')
        monkeypatch.setenv("PROVISIONER_CONFIG", str(config))
        assert load_settings().database.url == "sqlite+aiosqlite:///./a.db"
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/db")
        assert load_settings().database.url == "postgresql+asyncpg://u@h/db"

    def test_unknown_key_in_file_is_named(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        config = tmp_path / "c.toml"
        config.write_text('[email]\ntransprot = "smtp"\n')
        monkeypatch.setenv("PROVISIONER_CONFIG", str(config))
        with pytest.raises(SettingsError, match=r"email\.transprot: unknown key"):
            load_settings()

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            (b"[api\nmax_invitees = 3\n", "Expected ']'"),  # was a TOMLDecodeError traceback
            (b'log_level = "\xe9"\n', "not UTF-8 text"),
        ],
    )
    def test_a_file_that_is_not_toml_is_named(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes, reason: str
    ) -> None:
        config = tmp_path / "c.toml"
        config.write_bytes(content)
        monkeypatch.setenv("PROVISIONER_CONFIG", str(config))
        with pytest.raises(SettingsError, match=f"PROVISIONER_CONFIG=.*{reason}"):
            load_settings()

    def test_a_table_in_the_environment_that_is_not_json_is_named(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PROVISIONER_PROVIDERS", '{"zoom": {"client_secret": "s3cr3t-value"')
        with pytest.raises(SettingsError, match="PROVISIONER_PROVIDERS: not valid JSON") as err:
            load_settings()
        assert "s3cr3t-value" not in str(err.value)  # the value is never quoted

    def test_unknown_environment_variable_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PROVISIONER_DATABSE__URL", "x")
        with pytest.raises(SettingsError, match="PROVISIONER_DATABSE__URL"):
            load_settings()

    def test_invalid_value_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PROVISIONER_WORKER__MAX_ATTEMPTS", "zero")
        with pytest.raises(SettingsError, match=r"worker\.max_attempts"):
            load_settings()

    def test_unsupported_database_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "mysql://x/y")
        with pytest.raises(SettingsError, match=r"database\.url"):
            load_settings()

    def test_symmetric_token_algorithms_are_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PROVISIONER_AUTH__ALGORITHMS", '["HS256"]')
        with pytest.raises(SettingsError, match=r"auth\.algorithms"):
            load_settings()

    def test_missing_config_file_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PROVISIONER_CONFIG", "/nonexistent/provisioner.toml")
        with pytest.raises(SettingsError, match="no such file"):
            load_settings()
