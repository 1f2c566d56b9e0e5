"""Bearer tokens: only well-signed, current tokens for our audience, with the right scope."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from provisioner.auth.local_issuer import LocalIssuer
from tests.factories import meeting_body

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestBearerTokens:
    @pytest.mark.parametrize("path", ["/api/v1/meetings", "/api/v1/policy", "/api/v1/meetings/x"])
    async def test_anonymous_is_401(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_garbage_token_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/meetings", headers=bearer("not-a-jwt"))
        assert response.status_code == 401

    async def test_expired_token_is_401(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(subject="a", email="a@example.com", name="A", lifetime_seconds=-3600)
        response = await client.get("/api/v1/meetings", headers=bearer(token))
        assert response.status_code == 401

    async def test_wrong_audience_is_401(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(subject="a", email="a@example.com", name="A", aud="someone-else")
        assert (await client.get("/api/v1/meetings", headers=bearer(token))).status_code == 401

    async def test_wrong_issuer_is_401(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(
            subject="a", email="a@example.com", name="A", iss="https://evil.invalid"
        )
        assert (await client.get("/api/v1/meetings", headers=bearer(token))).status_code == 401

    async def test_token_from_unknown_key_is_401(self, client: httpx.AsyncClient) -> None:
        stranger = LocalIssuer(issuer="https://idp.test.invalid")
        token = stranger.token(subject="a", email="a@example.com", name="A")
        assert (await client.get("/api/v1/meetings", headers=bearer(token))).status_code == 401

    async def test_symmetric_and_unsigned_tokens_are_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        claims = {
            "sub": "a",
            "email": "a@example.com",
            "iss": "https://idp.test.invalid",
            "aud": "provisioner",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
            "scope": "meetings:read",
        }
        hs = jwt.encode(claims, "a-guessable-shared-secret-of-32-bytes!", algorithm="HS256")
        unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
        for token in (hs, unsigned):
            assert (await client.get("/api/v1/meetings", headers=bearer(token))).status_code == 401

    async def test_missing_scope_is_403(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(subject="a", email="a@example.com", name="A", scopes=["meetings:read"])
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=bearer(token))
        assert response.status_code == 403
        assert response.json()["type"].endswith("/permission-denied")

    async def test_token_without_email_is_401(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(subject="svc", email="", name="svc")
        assert (await client.get("/api/v1/meetings", headers=bearer(token))).status_code == 401


class TestIdTokensAreNotAccessTokens:
    async def test_a_token_with_a_nonce_is_refused(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(
            subject="a", email="a@example.com", name="A", groups=["employees"], nonce="n-1"
        )
        response = await client.get("/api/v1/meetings", headers=bearer(token))
        assert response.status_code == 401


def limit_writes(client: httpx.AsyncClient, *, burst: int) -> None:
    """Give the app under test a write limiter of `burst` tokens (one more a minute)."""
    from provisioner.ratelimit import RateLimiter

    app = client._transport.app  # type: ignore[attr-defined]
    app.state.write_limiter = RateLimiter(per_minute=1, burst=burst)


class TestWriteRateLimit:
    async def test_a_caller_over_the_limit_gets_429_with_retry_after(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        limit_writes(client, burst=2)
        token = issuer.token(
            subject="busy", email="busy@example.com", name="B", groups=["employees"]
        )
        statuses = [
            (
                await client.post(
                    "/api/v1/meetings", json=meeting_body(topic=f"M{n}"), headers=bearer(token)
                )
            ).status_code
            for n in range(3)
        ]
        assert statuses == [201, 201, 429]
        refused = await client.post("/api/v1/meetings", json=meeting_body(), headers=bearer(token))
        assert refused.headers["retry-after"].isdigit()
        assert refused.json()["type"].endswith("/rate-limited")


class TestCreateAuthorisation:
    """Creating a meeting checks scope, then role, then spends a write token (one
    dependency, `auth.deps.authorized`): a refused request spends nothing."""

    async def test_a_caller_without_the_employee_role_is_403_naming_the_role(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        token = issuer.token(subject="v", email="v@example.com", name="V", groups=["visitors"])
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=bearer(token))
        assert response.status_code == 403
        assert "role employee" in response.json()["detail"]

    async def test_refused_requests_spend_no_write_tokens(
        self, client: httpx.AsyncClient, issuer: LocalIssuer
    ) -> None:
        limit_writes(client, burst=1)
        no_scope = issuer.token(
            subject="s", email="s@example.com", name="S", groups=["employees"],
            scopes=["meetings:read"],
        )  # fmt: skip
        no_role = issuer.token(subject="s", email="s@example.com", name="S", groups=["visitors"])
        allowed = issuer.token(subject="s", email="s@example.com", name="S", groups=["employees"])
        for refused in (no_scope, no_role):
            response = await client.post(
                "/api/v1/meetings", json=meeting_body(), headers=bearer(refused)
            )
            assert response.status_code == 403
        created = await client.post(
            "/api/v1/meetings", json=meeting_body(), headers=bearer(allowed)
        )
        assert created.status_code == 201  # the one token was still there
        again = await client.post("/api/v1/meetings", json=meeting_body(), headers=bearer(allowed))
        assert again.status_code == 429


class TestSecurityHeaders:
    async def test_every_response_carries_them(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
