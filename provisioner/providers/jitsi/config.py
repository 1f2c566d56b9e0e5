"""Settings for one Jitsi deployment: a `[providers.jitsi]` table, validated at start-up.

Two profiles share the model:

- `self_hosted`: Jitsi Meet with Prosody token authentication. `iss` is `app_id`, `aud`
  is `audience`, `sub` is `domain` (the XMPP domain). HS256 signs with `app_secret` (Prosody
  `app_secret`); RS256 signs with a private key whose public half the Prosody key server
  (`asap_key_server`) serves under `key_id`.
- `jaas`: 8x8 Jitsi as a Service. Always RS256 with the key pair registered in the JaaS
  console; the header `kid` is `"<AppID>/<key id>"`, `iss` is `"chat"`, `aud` is `"jitsi"`,
  `sub` is the AppID, and rooms live under `{base_url}/{AppID}/`.

Every contradiction is refused with a message that says what to change, because a provider
that starts with the wrong key would mint links that nobody can use -- or, worse, that a
differently configured server accepts with rights we never meant to give.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

# Room names are XMPP node parts and end up in URL paths: keep the prefix to characters
# that survive both unchanged (Jitsi lower-cases room names).
_ROOM_PREFIX_PATTERN = r"^[a-z0-9_-]{0,32}$"

# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048

JAAS_ISSUER = "chat"
JAAS_AUDIENCE = "jitsi"


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class JitsiConfig(BaseModel):
    """How to mint join tokens for one Jitsi deployment (see the module docstring)."""

    # Validation errors would otherwise quote the raw input, secrets included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    base_url: HttpUrl = Field(
        description="Where people join, e.g. https://meet.example.com (JaaS: https://8x8.vc).",
    )
    app_id: str = Field(
        min_length=1,
        description="Self-hosted: the `iss` Prosody expects (app_id). JaaS: the AppID.",
    )
    audience: str = Field(default="jitsi", min_length=1, description="The `aud` claim.")
    domain: str | None = Field(
        default=None,
        description="Self-hosted: the XMPP domain used as `sub` (e.g. meet.example.com). "
        "JaaS uses the AppID instead; leave unset.",
    )
    algorithm: Literal["HS256", "RS256"] = "HS256"
    app_secret: SecretStr | None = Field(
        default=None, description=f"HS256 shared secret, at least {MIN_SECRET_BYTES} bytes."
    )
    private_key_file: Path | None = Field(default=None, description="RS256 PEM private key.")
    private_key: SecretStr | None = Field(default=None, description="RS256 PEM private key.")
    key_id: str | None = Field(
        default=None,
        description="The `kid` header; required for RS256. JaaS: '<AppID>/<key id>'.",
    )
    profile: Literal["self_hosted", "jaas"] = "self_hosted"
    join_grace_minutes: int = Field(
        default=15,
        ge=0,
        le=120,
        description="Tokens expire this long after the scheduled end; bounded because a "
        "token cannot be revoked once sent.",
    )
    early_join_minutes: int = Field(
        default=10, ge=0, le=60, description="Tokens become valid this long before the start."
    )
    room_prefix: str = Field(default="", pattern=_ROOM_PREFIX_PATTERN)

    @field_validator("base_url")
    @classmethod
    def _https_without_query(cls, value: HttpUrl) -> HttpUrl:
        """The token travels in the link, so the link must not travel in clear text."""
        if value.scheme != "https" and not _is_loopback(value.host):
            raise ValueError("use an https:// URL: join tokens travel in the link")
        if value.query or value.fragment:
            raise ValueError("remove the query string and fragment; rooms are appended as a path")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JitsiConfig:
        """Refuse combinations that would sign with the wrong key or for the wrong server."""
        if self.algorithm == "HS256":
            if self.app_secret is None:
                raise ValueError("algorithm HS256 needs app_secret (the Prosody app_secret)")
            if len(self.app_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"app_secret is too short: use at least {MIN_SECRET_BYTES} random bytes "
                    "(e.g. `openssl rand -hex 32`) in Prosody and here"
                )
            if self.private_key is not None or self.private_key_file is not None:
                raise ValueError(
                    "algorithm HS256 signs with app_secret: remove private_key/private_key_file "
                    'or set algorithm = "RS256"'
                )
        else:
            if self.private_key is None and self.private_key_file is None:
                raise ValueError("algorithm RS256 needs private_key_file or private_key (PEM)")
            if self.private_key is not None and self.private_key_file is not None:
                raise ValueError("set only one of private_key_file and private_key")
            if not self.key_id:
                raise ValueError(
                    "algorithm RS256 needs key_id (the `kid` the key server or JaaS knows)"
                )
            if self.app_secret is not None:
                raise ValueError(
                    "algorithm RS256 signs with the private key: remove app_secret "
                    'or set algorithm = "HS256"'
                )
        if self.profile == "jaas":
            if self.algorithm != "RS256":
                raise ValueError('profile jaas signs with RS256: set algorithm = "RS256"')
            if self.audience != JAAS_AUDIENCE:
                raise ValueError(f'profile jaas needs audience = "{JAAS_AUDIENCE}"')
            if self.domain is not None and self.domain != self.app_id:
                raise ValueError("profile jaas uses the AppID as `sub`: remove domain")
            if not (self.key_id or "").startswith(f"{self.app_id}/"):
                raise ValueError('profile jaas needs key_id = "<app_id>/<key id>"')
        elif not self.domain:
            raise ValueError(
                "profile self_hosted needs domain (the XMPP domain Prosody checks as `sub`)"
            )
        if self.algorithm == "RS256":
            # Load once here so a bad key stops start-up as a settings error naming the key.
            self.load_private_key()
        return self

    def load_private_key(self) -> RSAPrivateKey:
        """Read and check the RS256 key.

        Raises:
            ValueError: the key is missing, unreadable, encrypted, not RSA or too small.
                The message names the setting, never the key.
        """
        if self.private_key is not None:
            source = "private_key"
            pem = self.private_key.get_secret_value().encode()
        elif self.private_key_file is not None:
            source = "private_key_file"
            try:
                pem = self.private_key_file.read_bytes()
            except OSError as exc:
                raise ValueError(
                    f"private_key_file {self.private_key_file}: cannot read ({exc.strerror})"
                ) from None
        else:
            raise ValueError("algorithm RS256 needs private_key_file or private_key")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError:
            raise ValueError(
                f"{source} is encrypted: provide an unencrypted PEM from the secret store"
            ) from None
        except ValueError:
            # cryptography's message can quote parts of the input; say only what to fix.
            raise ValueError(f"{source} is not a PEM private key") from None
        if not isinstance(key, RSAPrivateKey):
            raise ValueError(f"{source} must be an RSA key for RS256")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{source} must be at least {MIN_RSA_BITS} bits")
        return key

    @property
    def token_issuer(self) -> str:
        """The `iss` claim the server accepts."""
        return JAAS_ISSUER if self.profile == "jaas" else self.app_id

    @property
    def token_subject(self) -> str:
        """The `sub` claim the server accepts."""
        if self.profile == "jaas" or self.domain is None:
            return self.app_id
        return self.domain

    @property
    def join_base(self) -> str:
        """The URL a room name is appended to (JaaS rooms live under the AppID)."""
        base = str(self.base_url).rstrip("/")
        return f"{base}/{self.app_id}" if self.profile == "jaas" else base
