"""Shared fixtures: a migrated database per test (SQLite always, PostgreSQL when configured),
settings built directly, the app with its real collaborators, and a token issuer.

Under CI=true a skipped test fails the run: a green CI that skipped the real parts proves
nothing.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from provisioner.app import build_state, close_state, create_app
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.migrate import upgrade
from provisioner.models import Base
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.support.sessions import store_browser_sessions

# Fixture plugins shared by several folders (pytest allows `pytest_plugins` only here and in
# test modules, not in nested conftest files).
pytest_plugins = ("tests.support.smtp", "tests.support.meeting_fixtures")

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ENV = "PROVISIONER_TEST_DATABASE_URL"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not os.environ.get(PG_ENV):
        raise pytest.UsageError(f"CI=true but {PG_ENV} is not set: PostgreSQL must be tested")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(f"CI=true: {skipped} test(s) skipped; failing the run", red=True)


@pytest.fixture(autouse=True)
def _drop_closed_log_handlers() -> Iterator[None]:
    """A test that runs the CLI configures logging on the stream it was given (CliRunner's
    or pytest's capture), which is closed once the test ends; the root logger would keep
    writing there, and every later test's log line (aiosmtpd's, say) print "Logging
    error". Only handlers whose stream is closed are removed."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (Alembic runs once, not per test)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get(PG_ENV)
    if not url:  # a laptop without PostgreSQL; under CI=true the skip fails the run
        pytest.skip(f"{PG_ENV} is not set")
    import asyncio

    async def reset() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())
    upgrade(url)
    yield url


@pytest.fixture(params=_backends())
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "provisioner.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    truncate_postgres(url)


def truncate_postgres(url: str) -> None:
    """Empty every table (tests on PostgreSQL share one migrated schema)."""
    import asyncio

    async def truncate() -> None:
        engine = create_async_engine(url)
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()

    asyncio.run(truncate())


@pytest.fixture
def postgres_database_url(postgres_url: str) -> Iterator[str]:
    """PostgreSQL only, for what SQLite cannot show (several processes, SKIP LOCKED)."""
    yield postgres_url
    truncate_postgres(postgres_url)


@pytest.fixture(scope="session")
def issuer() -> LocalIssuer:
    return LocalIssuer(issuer="https://idp.test.invalid")


@pytest.fixture
def jitsi_config() -> dict[str, Any]:
    return {
        "base_url": "https://meet.example.com",
        "app_id": "provisioner-test",
        "domain": "meet.example.com",
        "app_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def make_settings(
    tmp_path: Path, database_url: str, issuer: LocalIssuer, jitsi: dict[str, Any], **overrides: Any
) -> Settings:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    values: dict[str, Any] = {
        "database": {"url": database_url},
        "email": {
            "transport": "file",
            "file_dir": tmp_path / "outbox",
            "sender": "Meetings <meetings@example.com>",
        },
        "auth": {"issuer": issuer.issuer, "jwks_file": jwks},
        "security": {"data_key_file": tmp_path / "data-key"},
        "policy_file": REPO_ROOT / "config" / "policy.yaml",
        "worker": {"embedded": False, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
        "idempotency": {"wait_seconds": 5.0},
        # Tests send many writes as one caller; the limiter has tests of its own.
        "api": {"write_rate_per_minute": 100_000, "write_burst": 100_000},
        "providers": {"jitsi": jitsi},
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, issuer: LocalIssuer, jitsi_config: dict[str, Any]
) -> Settings:
    return make_settings(tmp_path, database_url, issuer, jitsi_config)


@pytest.fixture
async def state(settings: Settings) -> AsyncIterator[AppState]:
    app_state = build_state(settings)
    # Browser sessions a test module made at import (tests.support.sessions).
    await store_browser_sessions(app_state)
    yield app_state
    await close_state(app_state)


@pytest.fixture
async def client(settings: Settings, state: AppState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, state=state, run_worker=False)

    async def with_browser_sessions(_: httpx.Request) -> None:
        await store_browser_sessions(state)  # those made inside the test, too

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://provisioner.test",
        event_hooks={"request": [with_browser_sessions]},
    ) as http:
        yield http


@pytest.fixture
def host_headers(issuer: LocalIssuer) -> dict[str, str]:
    token = issuer.token(
        subject="dana", email="dana@example.com", name="Dana Host", groups=["employees"]
    )
    return {"Authorization": f"Bearer {token}"}
