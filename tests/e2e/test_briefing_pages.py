"""The briefing pages with a real sign-in: a host who must acknowledge first is sent to
the provider's card, acknowledges it once, then books; the meeting page carries the card
and the emergency actions; IT sees who has acknowledged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from provisioner.settings import Settings
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import e2e_settings
from tests.e2e.flows import csrf_from, sign_in
from tests.support.app_server import serve_app
from tests.support.oidc_server import OidcServer


@pytest.fixture
def strict_settings(
    tmp_path: Path, sqlite_template: Path, oidc: OidcServer, app_port: int
) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (REPO_ROOT / "config" / "policy.yaml").read_text()
        + "\nbriefing_acknowledgement: required\n"
    )
    return e2e_settings(tmp_path, sqlite_template, oidc, app_port, policy_file=policy)


@pytest.fixture
def strict_app(strict_settings: Settings, app_port: int) -> Iterator[str]:
    with serve_app(strict_settings, port=app_port) as url:
        yield url


def form(csrf: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "topic": "Vendor call",
        "start": (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "duration_minutes": "30",
        "timezone": "Europe/Lisbon",
        "invitees": "ana@example.com",
        "provider": "jitsi",
    }


def test_acknowledge_once_then_book_and_it_sees_who_has(strict_app: str) -> None:
    with httpx.Client(timeout=15.0) as dana:
        walk = sign_in(dana, strict_app, "dana", next_path="/meetings/new")
        assert walk.response is not None
        csrf = csrf_from(walk.response.text)

        refused = dana.post(f"{strict_app}/meetings/new", data=form(csrf))
        assert refused.status_code == 303
        assert refused.headers["location"] == "/briefings/jitsi?next=/meetings/new"

        card = dana.get(f"{strict_app}/briefings/jitsi", params={"next": "/meetings/new"})
        assert card.status_code == 200
        assert "Kick out" in card.text and 'id="acknowledge"' in card.text
        done = dana.post(
            f"{strict_app}/briefings/jitsi?next=/meetings/new", data={"csrf_token": csrf}
        )
        assert done.status_code == 303 and done.headers["location"] == "/meetings/new"
        assert 'id="acknowledged"' in dana.get(f"{strict_app}/briefings/jitsi").text

        booked = dana.post(f"{strict_app}/meetings/new", data=form(csrf))
        assert booked.status_code == 303, booked.text[:1000]
        detail = dana.get(f"{strict_app}{booked.headers['location']}")
        assert "Your security card for Jitsi" in detail.text
        assert 'id="emergency-end"' in detail.text
        assert "/incidents/new?meeting=" in detail.text

        # IT's page is not for employees.
        assert dana.get(f"{strict_app}/admin/briefings").status_code == 403

    with httpx.Client(timeout=15.0) as ivan:
        walk = sign_in(ivan, strict_app, "ivan", next_path="/admin/briefings")
        assert walk.response is not None and walk.response.status_code == 200
        assert "dana@example.com" in walk.response.text
        assert "<td>jitsi</td>" in walk.response.text


def test_posting_without_csrf_acknowledges_nothing(strict_app: str) -> None:
    with httpx.Client(timeout=15.0) as erin:
        sign_in(erin, strict_app, "erin", next_path="/briefings/jitsi")
        assert erin.post(f"{strict_app}/briefings/jitsi", data={}).status_code == 403
        assert 'id="acknowledge"' in erin.get(f"{strict_app}/briefings/jitsi").text
