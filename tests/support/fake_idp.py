"""An OpenID provider inside the test process, as an `httpx.MockTransport` for Authlib.

The e2e tests use the real `oidc-provider`; these fakes exist for what it will not do on
request: sign an id_token for another application's audience, or be unreachable. The app's
OAuth client is rebuilt with `build_oauth(settings.oidc, transport=...)`, so every call
Authlib makes (discovery, keys, token) lands here; the browser's hops to the authorization
endpoint are not followed (`sign_in_with` reads the state and nonce off the redirect).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.web.oidc import build_oauth

ISSUER = "https://sso.test.invalid"
CLIENT_ID = "provisioner-web"
CLIENT_SECRET = "fake-idp-client-secret"  # noqa: S105 (a test's own value)


@dataclass
class FakeIdentityProvider:
    """Discovery, JWKS and a token endpoint; `down` makes every call fail to connect,
    `garbled` answers every call with a proxy's HTML error page."""

    issuer: LocalIssuer = field(default_factory=lambda: LocalIssuer(issuer=ISSUER))
    down: bool = False
    garbled: bool = False
    # The claims of the next id_token (iss, exp, iat are added unless given).
    next_claims: dict[str, Any] = field(default_factory=dict)
    issued_id_tokens: list[str] = field(default_factory=list)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def install(self, app: FastAPI, settings_oidc: Any) -> None:
        """Make `app`'s browser sign-in talk to this provider (a fresh client, no cache)."""
        app.state.oauth = build_oauth(settings_oidc, transport=self.transport)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("the identity provider is down", request=request)
        if self.garbled:
            return httpx.Response(200, text="<html>502 Bad Gateway</html>")
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.metadata())
        if path == "/jwks":
            return httpx.Response(200, json=self.issuer.jwks())
        if path == "/token" and request.method == "POST":
            id_token = self._id_token()
            self.issued_id_tokens.append(id_token)
            body = {
                "access_token": "fake-access-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            }
            return httpx.Response(200, content=json.dumps(body).encode(), headers=_JSON)
        return httpx.Response(404)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks",
            "end_session_endpoint": f"{ISSUER}/logout",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        }

    def _id_token(self) -> str:
        claims = {"aud": CLIENT_ID, **self.next_claims}
        return self.issuer.token(
            subject=str(claims.pop("sub")),
            email=str(claims.pop("email")),
            name=str(claims.pop("name", "")),
            groups=list(claims.pop("groups", [])),
            scopes=(),
            **claims,
        )


_JSON = {"content-type": "application/json"}


def oidc_settings(session_secret: str) -> dict[str, Any]:
    """The `oidc` settings for an app signing in with the fake provider."""
    return {
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "session_secret": session_secret,
        "insecure_http_cookies": True,
        "redirect_base": "http://provisioner.test",
    }


async def sign_in_with(
    browser: httpx.AsyncClient,
    idp: FakeIdentityProvider,
    *,
    next_path: str = "/meetings",
    **claims: Any,
) -> httpx.Response:
    """The code flow as a browser runs it; returns the callback's response."""
    started = await browser.get("/auth/start", params={"next": next_path})
    assert started.status_code == 302, started.text
    query = parse_qs(urlsplit(started.headers["location"]).query)
    idp.next_claims = {"nonce": query["nonce"][0], **claims}
    return await browser.get("/auth/callback", params={"code": "c0de", "state": query["state"][0]})
