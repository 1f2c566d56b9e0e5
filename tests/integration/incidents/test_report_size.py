"""A report's request may be as large as its attachments allow, and no larger."""

from __future__ import annotations

import base64

import httpx
import pytest

from provisioner.settings import Settings
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.incidents.conftest import PUBLIC_URL, report_body
from tests.support.meeting_fixtures import (
    BROWSER_OIDC,
    SettingsFactory,
    created_meeting,
    smtp_email,
)
from tests.support.smtp import SmtpServer


@pytest.fixture
def settings(settings_with: SettingsFactory, smtp_server: SmtpServer) -> Settings:
    base = settings_with()
    return settings_with(
        email=smtp_email(smtp_server),
        api={**base.api.model_dump(), "public_url": PUBLIC_URL},
        oidc=BROWSER_OIDC,
        incidents={"max_attachments": 2, "max_attachment_bytes": 1024 * 1024},
    )


class TestReportSize:
    async def test_a_screenshot_over_the_general_body_limit_is_filed(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        # The form promises max_attachment_bytes per file; the general 256 KiB cap on a
        # request cut a phone screenshot short (413, the report lost).
        meeting = await created_meeting(client, host_headers, provider="fake")
        screenshot = b"\x89PNG" + bytes(range(256)) * 2048  # 512 KiB
        assert len(screenshot) > state.settings.api.max_body_bytes
        attachment = {
            "filename": "screenshot.png",
            "content_type": "image/png",
            "content_base64": base64.b64encode(screenshot).decode(),
        }
        filed = await client.post(
            "/api/v1/incidents",
            json=report_body(meeting["id"], attachments=[attachment]),
            headers=host_headers,
        )
        assert filed.status_code == 201, filed.text[:300]
        (stored,) = filed.json()["evidence"]["attachments"]
        assert stored["size"] == len(screenshot)

    async def test_a_report_over_what_its_attachments_allow_is_still_413(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        limits = state.settings.incidents
        too_much = limits.max_attachments * limits.max_attachment_bytes * 2
        answer = await client.post(
            "/api/v1/incidents",
            content=b"{" + b" " * too_much + b"}",
            headers=host_headers | {"Content-Type": "application/json"},
        )
        assert answer.status_code == 413
        # Every other route keeps the general limit.
        general = state.settings.api.max_body_bytes
        meetings = await client.post(
            "/api/v1/meetings",
            content=b"{" + b" " * general + b"}",
            headers=host_headers | {"Content-Type": "application/json"},
        )
        assert meetings.status_code == 413
