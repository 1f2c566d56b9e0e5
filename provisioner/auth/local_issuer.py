"""A tiny token issuer for the demo and the tests: an RSA key, its JWKS, and signed tokens.

It stands in for the organisation's identity provider where none runs (the SSO issue
brings a real OpenID provider for end-to-end tests). It is never used by `serve`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class LocalIssuer:
    def __init__(
        self,
        *,
        issuer: str = "https://idp.demo.invalid",
        audience: str = "provisioner",
        key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = hashlib.sha256(
            self._key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest()[:16]

    @classmethod
    def persistent(cls, directory: Path, *, issuer: str = "https://idp.dev.invalid") -> LocalIssuer:
        """An issuer whose key survives restarts (kept 0600 in `directory`), JWKS written."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = directory / "key.pem"
        if pem.exists():
            loaded = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{pem} is not an RSA key")
            issuer_ = cls(issuer=issuer, key=loaded)
        else:
            issuer_ = cls(issuer=issuer)
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(
                    issuer_._key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        issuer_.write_jwks(directory / "jwks.json")
        return issuer_

    def jwks(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        public.update(kid=self.key_id, use="sig", alg="RS256")
        return {"keys": [public]}

    def write_jwks(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(
        self,
        *,
        subject: str,
        email: str,
        name: str,
        groups: Sequence[str] = (),
        scopes: Sequence[str] = ("meetings:read", "meetings:write"),
        lifetime_seconds: int = 3600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "email": email,
            "name": name,
            "groups": list(groups),
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            **extra,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})

    def client_token(
        self,
        client_id: str,
        *,
        scopes: Sequence[str] = ("meetings:write", "meetings:write:on_behalf"),
        lifetime_seconds: int = 3600,
    ) -> str:
        """A client-credentials access token (RFC 9068 shape: `sub` is the client, no email)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})
