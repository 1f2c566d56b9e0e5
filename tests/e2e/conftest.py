"""End-to-end fixtures: the real OpenID provider (node) and provisioner as a real server."""

from __future__ import annotations

import base64
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support.app_server import serve_app
from tests.support.oidc_server import AUDIENCE, WEB_CLIENT_ID, OidcServer, oidc_provider
from tests.support.prism import free_port


@pytest.fixture(scope="session")
def app_port() -> int:
    """One port for every e2e app server: the provider's redirect URI names it."""
    return free_port()


@pytest.fixture(scope="session")
def oidc(tmp_path_factory: pytest.TempPathFactory, app_port: int) -> Iterator[OidcServer]:
    with oidc_provider(
        tmp_path_factory.mktemp("oidc"), app_base=f"http://127.0.0.1:{app_port}"
    ) as server:
        yield server


def e2e_settings(
    tmp_path: Path, sqlite_template: Path, oidc: OidcServer, app_port: int, **overrides: Any
) -> Settings:
    """SQLite only: what these tests prove (sign-in, tokens, pages) does not vary by engine."""
    database = tmp_path / "provisioner.db"
    shutil.copyfile(sqlite_template, database)
    base = f"http://127.0.0.1:{app_port}"
    values: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{database}"},
        "email": {"transport": "file", "file_dir": tmp_path / "outbox"},
        "auth": {"issuer": oidc.issuer, "jwks_url": oidc.jwks_url, "audience": AUDIENCE},
        "oidc": {
            "issuer": oidc.issuer,
            "client_id": WEB_CLIENT_ID,
            "client_secret": oidc.secrets[WEB_CLIENT_ID],
            "insecure_http_cookies": True,
            "redirect_base": base,
        },
        "api": {"public_url": base},
        "security": {"data_key_file": tmp_path / "data-key"},
        "policy_file": REPO_ROOT / "config" / "policy.yaml",
        "worker": {"embedded": False},
        "providers": {
            "jitsi": {
                "base_url": "https://meet.example.com",
                "app_id": "provisioner-test",
                "domain": "meet.example.com",
                "app_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
        },
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def app_settings(
    tmp_path: Path, sqlite_template: Path, oidc: OidcServer, app_port: int
) -> Settings:
    return e2e_settings(tmp_path, sqlite_template, oidc, app_port)


@pytest.fixture
def app_url(app_settings: Settings, app_port: int) -> Iterator[str]:
    with serve_app(app_settings, port=app_port) as url:
        yield url
