"""Fixtures for incident tests: the app sending real email to aiosmtpd, several callers,
and browser sessions made the way Starlette signs them (no identity provider needed).

The responder, the stranger, browser sessions and email helpers are shared with the
meeting-control tests (`tests.support.meeting_fixtures`)."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from typing import Any

import pytest

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.providers.base import Participant
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.support.meeting_fixtures import (
    BROWSER_OIDC,
    SettingsFactory,
    bearer,
    received,
    smtp_email,
)
from tests.support.smtp import SmtpServer

PUBLIC_URL = "https://provisioner.example.com"


@pytest.fixture
def settings(settings_with: SettingsFactory, smtp_server: SmtpServer) -> Settings:
    base = settings_with()
    return settings_with(
        email=smtp_email(smtp_server),
        api={**base.api.model_dump(), "public_url": PUBLIC_URL},
        oidc=BROWSER_OIDC,
        incidents={
            "notify_emails": ["security@example.com"],
            "managers": {"ana@example.com": "mgr@example.com"},
            "max_attachment_bytes": 4096,
            "training_url": "https://learn.example.com/meeting-safety",
        },
    )


@pytest.fixture
def invitee_headers(issuer: LocalIssuer) -> dict[str, str]:
    return bearer(issuer, "ana", "ana@example.com", "Ana Lima", "employees")


@pytest.fixture
def fake(state: AppState) -> FakeProvider:
    """The only provider: every feature, an uninvited guest in the call."""
    provider = FakeProvider(
        participants=[
            Participant(name="Ana Lima", email="ana@example.com", provider_participant_id="p1"),
            Participant(name="Mallory", email=None, provider_participant_id="p2"),
        ]
    )
    state.providers = {"fake": provider}
    return provider


def report_body(meeting_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "meeting_id": meeting_id,
        "summary": "An uninvited guest shared offensive images",
        "statement": "At 10:05 someone called Mallory joined and shared offensive images.",
        "attachments": [
            {
                "filename": "screenshot.png",
                "content_type": "image/png",
                "content_base64": base64.b64encode(b"\x89PNG fake screenshot").decode(),
            }
        ],
    }
    body.update(overrides)
    return body


def notices(smtp_server: SmtpServer) -> dict[str, EmailMessage]:
    """Notice emails received, by recipient address."""
    return {
        message["To"].addresses[0].addr_spec: message
        for message in received(smtp_server)
        if message["X-Provisioner-Notice"]
    }
