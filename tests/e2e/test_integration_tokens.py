"""Calendar integrations: client-credentials JWTs from the real provider, and forgeries.

Every refusal is 401 (or 403 for a valid token lacking the scope) and creates nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from provisioner.settings import Settings
from tests.e2e.conftest import e2e_settings
from tests.e2e.flows import sign_in
from tests.support.app_server import serve_app
from tests.support.oidc_server import (
    INTEGRATION_ID,
    OTHER_RESOURCE,
    READ_ONLY_ID,
    SHORT_LIVED_ID,
    OidcServer,
    SigningKey,
    oidc_provider,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return _unb64(header), _unb64(payload)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def on_behalf_body(topic: str = "Synced from the calendar") -> dict[str, Any]:
    return {
        "topic": topic,
        "start": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "duration_minutes": 30,
        "timezone": "Europe/Berlin",
        "invitees": [{"email": "ana@example.com", "name": "Ana Lima"}],
        "on_behalf_of": {"email": "dana@example.com", "name": "Dana Host"},
    }


@pytest.fixture
def strict_settings(
    tmp_path: Path, sqlite_template: Path, oidc: OidcServer, app_port: int
) -> Settings:
    """No clock leeway, so a token that expired a second ago is already refused."""
    settings = e2e_settings(tmp_path, sqlite_template, oidc, app_port)
    auth = settings.auth.model_copy(update={"leeway_seconds": 0})
    return settings.model_copy(update={"auth": auth})


@pytest.fixture
def strict_app(strict_settings: Settings, app_port: int) -> Iterator[str]:
    with serve_app(strict_settings, port=app_port) as url:
        yield url


class TestClientCredentials:
    def test_integration_creates_a_meeting_for_an_employee(
        self, oidc: OidcServer, strict_app: str
    ) -> None:
        token = oidc.access_token(INTEGRATION_ID)
        header, claims = _parts(token)
        assert header["typ"] == "at+jwt" and claims["aud"] == "provisioner"
        created = httpx.post(
            f"{strict_app}/api/v1/meetings", json=on_behalf_body(), headers=bearer(token)
        )
        assert created.status_code == 201, created.text
        meeting_id = created.json()["id"]
        assert created.json()["host_join"] is None  # the host's link is not the calendar's

        with httpx.Client(timeout=15.0) as dana:
            sign_in(dana, strict_app, "dana")
            mine = dana.get(f"{strict_app}/api/v1/meetings").json()["data"]
            assert [m["id"] for m in mine] == [meeting_id]
            assert dana.get(f"{strict_app}/meetings/{meeting_id}").status_code == 200
        with httpx.Client(timeout=15.0) as ivan:
            sign_in(ivan, strict_app, "ivan")
            events = ivan.get(
                f"{strict_app}/api/v1/admin/audit", params={"target_id": meeting_id}
            ).json()["data"]
        on_behalf = [e for e in events if e["action"] == "meeting.requested_on_behalf"]
        assert on_behalf and on_behalf[0]["details"]["client_id"] == INTEGRATION_ID
        assert on_behalf[0]["actor"] == f"client:{INTEGRATION_ID}"

    def test_integration_must_name_the_employee(self, oidc: OidcServer, strict_app: str) -> None:
        body = on_behalf_body()
        del body["on_behalf_of"]
        response = httpx.post(
            f"{strict_app}/api/v1/meetings", json=body, headers=bearer(oidc.access_token())
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "on_behalf_of"

    def test_read_only_integration_cannot_create(self, oidc: OidcServer, strict_app: str) -> None:
        token = oidc.access_token(READ_ONLY_ID, scope="meetings:read")
        response = httpx.post(
            f"{strict_app}/api/v1/meetings", json=on_behalf_body(), headers=bearer(token)
        )
        assert response.status_code == 403
        assert _count(strict_app, oidc) == 0

    def test_integration_has_no_admin_role(self, oidc: OidcServer, strict_app: str) -> None:
        response = httpx.get(
            f"{strict_app}/api/v1/admin/audit", headers=bearer(oidc.access_token())
        )
        assert response.status_code == 403


def _count(app: str, oidc: OidcServer) -> int:
    """Meetings anyone holds, as IT sees them."""
    with httpx.Client(timeout=15.0) as ivan:
        sign_in(ivan, app, "ivan")
        return len(ivan.get(f"{app}/api/v1/admin/meetings").json()["data"])


def _public_pem(oidc: OidcServer) -> bytes:
    return oidc.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    signing_input = (
        _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    ).encode()
    if secret is None:
        return signing_input.decode() + "."
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + _b64(signature)


class TestForgedAndWrongTokens:
    def _refused(self, app: str, oidc: OidcServer, token: str) -> None:
        for request in (
            httpx.post(f"{app}/api/v1/meetings", json=on_behalf_body(), headers=bearer(token)),
            httpx.get(f"{app}/api/v1/meetings", headers=bearer(token)),
        ):
            assert request.status_code == 401, request.text
            assert request.headers["content-type"] == "application/problem+json"
        assert _count(app, oidc) == 0

    def test_expired_token(self, oidc: OidcServer, strict_app: str) -> None:
        token = oidc.access_token(SHORT_LIVED_ID)
        time.sleep(2.1)
        self._refused(strict_app, oidc, token)

    def test_wrong_audience(self, oidc: OidcServer, strict_app: str) -> None:
        token = oidc.access_token(INTEGRATION_ID, resource=OTHER_RESOURCE)
        assert _parts(token)[1]["aud"] == "someone-else"
        self._refused(strict_app, oidc, token)

    def test_wrong_issuer_with_the_same_key(
        self, oidc: OidcServer, strict_app: str, tmp_path: Path, app_port: int
    ) -> None:
        with oidc_provider(
            tmp_path, app_base=f"http://127.0.0.1:{app_port}", key=oidc.key
        ) as impostor:
            token = impostor.access_token(INTEGRATION_ID)
        assert _parts(token)[1]["iss"] != oidc.issuer
        self._refused(strict_app, oidc, token)

    def test_alg_none(self, oidc: OidcServer, strict_app: str) -> None:
        header, claims = _parts(oidc.access_token())
        self._refused(strict_app, oidc, _forge({**header, "alg": "none"}, claims, None))

    def test_hs256_signed_with_the_public_key(self, oidc: OidcServer, strict_app: str) -> None:
        header, claims = _parts(oidc.access_token())
        forged = _forge({**header, "alg": "HS256"}, claims, _public_pem(oidc))
        self._refused(strict_app, oidc, forged)

    def test_tampered_payload(self, oidc: OidcServer, strict_app: str) -> None:
        token = oidc.access_token(READ_ONLY_ID, scope="meetings:read")
        header, payload, signature = token.split(".")
        _, claims = _parts(token)
        claims["scope"] = "meetings:read meetings:write meetings:write:on_behalf"
        tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
        self._refused(strict_app, oidc, tampered)

    def test_unknown_kid(self, oidc: OidcServer, strict_app: str) -> None:
        _, claims = _parts(oidc.access_token())
        stranger = SigningKey.generate()
        token = jwt.encode(claims, stranger.private, algorithm="RS256", headers={"kid": "nope"})
        self._refused(strict_app, oidc, token)
