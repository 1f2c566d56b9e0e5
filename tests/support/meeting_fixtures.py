"""Fixtures and helpers shared by the meeting-control, incident and scan tests.

A pytest plugin, registered in tests/conftest.py. Its fixtures:

    settings_with      `make_settings` bound to this test's folder, database and issuer
    responder_headers  a responder's bearer token (Rosa, any meeting)
    stranger_headers   an employee with no part in the meeting (Erin)
    fake               a fake provider with every feature, the only one configured

A folder or module that needs something else defines its own fixture of the same name.
`browser_session` and `BROWSER_OIDC` live in tests.support.sessions (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from provisioner.audit.models import AuditEvent
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.conftest import make_settings
from tests.factories import meeting_body
from tests.fakes.provider import FakeProvider
from tests.support.sessions import BROWSER_OIDC as BROWSER_OIDC
from tests.support.sessions import SESSION_SECRET as SESSION_SECRET
from tests.support.sessions import browser_session as browser_session
from tests.support.smtp import SmtpServer

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_with(
    tmp_path: Path, database_url: str, issuer: LocalIssuer, jitsi_config: dict[str, Any]
) -> SettingsFactory:
    """`make_settings(**overrides)` for this test's folder, database, issuer and Jitsi."""

    def make(**overrides: Any) -> Settings:
        return make_settings(tmp_path, database_url, issuer, jitsi_config, **overrides)

    return make


def smtp_email(smtp_server: SmtpServer) -> dict[str, Any]:
    """The `email` settings of the real channel, sending to aiosmtpd (STARTTLS, AUTH)."""
    return {
        "transport": "smtp",
        "sender": "Meetings <meetings@example.com>",
        "smtp": smtp_server.settings(),
    }


def bearer(
    issuer: LocalIssuer, subject: str, email: str, name: str, *groups: str
) -> dict[str, str]:
    token = issuer.token(subject=subject, email=email, name=name, groups=list(groups))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def responder_headers(issuer: LocalIssuer) -> dict[str, str]:
    return bearer(issuer, "rosa", "rosa@example.com", "Rosa Responder", "responders")


@pytest.fixture
def stranger_headers(issuer: LocalIssuer) -> dict[str, str]:
    return bearer(issuer, "erin", "erin@example.com", "Erin", "employees")


@pytest.fixture
def fake(state: AppState) -> FakeProvider:
    """A fake provider with every feature, the only one configured."""
    provider = FakeProvider()
    state.providers = {"fake": provider}
    return provider


async def created_meeting(
    client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    """A meeting made through the API (`tests.factories.meeting_body` with `overrides`)."""
    response = await client.post(
        "/api/v1/meetings", json=meeting_body(**overrides), headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def running_meeting(
    client: httpx.AsyncClient, headers: dict[str, str], provider: str = "fake"
) -> str:
    """The id of a meeting on `provider` that starts now (so it is running)."""
    now = datetime.now(UTC).replace(microsecond=0)
    meeting = await created_meeting(client, headers, provider=provider, start=now.isoformat())
    return str(meeting["id"])


async def audit_of(state: AppState, target_id: str) -> list[tuple[str, str, dict[str, object]]]:
    """(action, actor, details) of every audit event about `target_id`, oldest first."""
    async with state.db.session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.id)
        )
        return [(e.action, e.actor, dict(e.details)) for e in rows]


async def actions_of(state: AppState, target_id: str) -> list[str]:
    """The actions of every audit event about `target_id`, oldest first."""
    return [action for action, _, _ in await audit_of(state, target_id)]


def parse_email(content: bytes) -> EmailMessage:
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def received(smtp_server: SmtpServer, since: int = 0) -> list[EmailMessage]:
    """The messages `smtp_server` received, from the `since`-th on."""
    return [parse_email(raw.content) for raw in smtp_server.handler.messages[since:]]


def text_of(message: EmailMessage) -> str:
    """The message's plain-text body."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content
