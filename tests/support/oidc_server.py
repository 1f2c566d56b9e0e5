"""The npm `oidc-provider` (a certified OpenID provider) on a loopback port, for e2e tests.

`tests/support/oidc/provider.mjs` is configured from a JSON file written here: the signing
key (made here, so a second provider can share it under another issuer name), the web
client, the calendar integrations and the test accounts. Without node or the npm package
the tests skip with a reason (and fail under CI=true).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.prism import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tests" / "support" / "oidc" / "provider.mjs"
PACKAGE = REPO_ROOT / "tests" / "node" / "node_modules" / "oidc-provider" / "package.json"

AUDIENCE = "provisioner"
RESOURCE = "urn:provisioner:api"
OTHER_RESOURCE = "urn:other:api"
WEB_CLIENT_ID = "provisioner-web"
INTEGRATION_ID = "calendar-sync"
READ_ONLY_ID = "calendar-reader"
SHORT_LIVED_ID = "calendar-short"
INTEGRATION_SCOPES = "meetings:read meetings:write meetings:write:on_behalf"

ACCOUNTS: dict[str, dict[str, Any]] = {
    "dana": {"email": "dana@example.com", "name": "Dana Host", "groups": ["employees"]},
    "erin": {"email": "erin@example.com", "name": "Erin Other", "groups": ["employees"]},
    "ivan": {"email": "ivan@example.com", "name": "Ivan IT", "groups": ["it-admins"]},
    "nora": {"email": "nora@example.com", "name": "Nora Nogroups"},
    "rosa": {"email": "rosa@example.com", "name": "Rosa Responder", "groups": ["responders"]},
    # In forty directory groups (GUIDs, as Entra ID sends them) besides `employees`: her
    # identity does not fit in a 4 KB cookie, which is why sessions are kept server-side.
    "gina": {
        "email": "gina@example.com",
        "name": "Gina Groups",
        "groups": [f"00000000-0000-0000-0000-{i:012d}" for i in range(40)] + ["employees"],
    },
}


@dataclass(frozen=True)
class SigningKey:
    private: rsa.RSAPrivateKey
    kid: str

    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private))
        jwk.pop("key_ops", None)  # published as-is: "sign" would forbid verifying
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return jwk

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            kid="test-" + secrets.token_hex(4),
        )


@dataclass(frozen=True)
class OidcServer:
    issuer: str
    key: SigningKey
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    @property
    def token_url(self) -> str:
        return self.issuer + "/token"

    def client_credentials(
        self, client_id: str, *, resource: str = RESOURCE, scope: str | None = None
    ) -> httpx.Response:
        """A client-credentials token request, exactly as an integration sends it."""
        data = {"grant_type": "client_credentials", "resource": resource}
        if scope is not None:
            data["scope"] = scope
        return httpx.post(
            self.token_url, data=data, auth=(client_id, self.secrets[client_id]), timeout=10.0
        )

    def access_token(
        self, client_id: str = INTEGRATION_ID, *, scope: str = INTEGRATION_SCOPES, **kwargs: Any
    ) -> str:
        response = self.client_credentials(client_id, scope=scope, **kwargs)
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


def require_oidc_provider() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the OpenID provider tests need it")
    if not PACKAGE.exists():
        pytest.skip(f"{PACKAGE} is missing: run `npm ci` in tests/node")


@contextmanager
def oidc_provider(
    workdir: Path,
    *,
    app_base: str,
    key: SigningKey | None = None,
    startup_seconds: float = 30.0,
) -> Iterator[OidcServer]:
    """Run provider.mjs until the block ends; the web client may redirect to `app_base`."""
    require_oidc_provider()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    key = key or SigningKey.generate()
    client_secrets = {
        name: secrets.token_urlsafe(24)
        for name in (WEB_CLIENT_ID, INTEGRATION_ID, READ_ONLY_ID, SHORT_LIVED_ID)
    }
    integration = {
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    config = {
        "issuer": issuer,
        "port": port,
        "cookie_secret": secrets.token_urlsafe(24),
        "keys": [key.private_jwk()],
        "accounts": ACCOUNTS,
        "clients": [
            {
                "client_id": WEB_CLIENT_ID,
                "client_secret": client_secrets[WEB_CLIENT_ID],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [app_base + "/auth/callback"],
                "post_logout_redirect_uris": [app_base + "/auth/signed-out"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
            {
                **integration,
                "client_id": INTEGRATION_ID,
                "client_secret": client_secrets[INTEGRATION_ID],
                "scope": INTEGRATION_SCOPES,
            },
            {
                **integration,
                "client_id": READ_ONLY_ID,
                "client_secret": client_secrets[READ_ONLY_ID],
                "scope": "meetings:read",
            },
            {
                **integration,
                "client_id": SHORT_LIVED_ID,
                "client_secret": client_secrets[SHORT_LIVED_ID],
                "scope": INTEGRATION_SCOPES,
            },
        ],
        "resources": {
            RESOURCE: {"scope": INTEGRATION_SCOPES, "audience": AUDIENCE},
            OTHER_RESOURCE: {"scope": INTEGRATION_SCOPES, "audience": "someone-else"},
        },
        "token_ttl": {SHORT_LIVED_ID: 1},
        "api_scopes": INTEGRATION_SCOPES.split(),
    }
    config_path = workdir / f"oidc-{port}.json"
    config_path.write_text(json.dumps(config))
    log_path = workdir / f"oidc-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our script, our arguments)
            ["node", str(SCRIPT), str(config_path)],  # noqa: S607 (node from PATH)
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + startup_seconds
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"oidc-provider exited:\n{log_path.read_text()[-3000:]}")
                try:
                    found = httpx.get(issuer + "/.well-known/openid-configuration", timeout=1.0)
                    if found.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("oidc-provider did not start")
                time.sleep(0.1)
            yield OidcServer(issuer=issuer, key=key, secrets=client_secrets)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
