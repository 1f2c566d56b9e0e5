"""Settings for Google Meet: a `[providers.google_meet]` table, validated at start-up.

The app is a Google Cloud service account with domain-wide delegation: a Workspace super
admin authorises its client id for the scopes in `SCOPES` (Admin console > Security >
API controls > Domain-wide delegation), and the service then acts as each meeting's host,
so the Calendar event and the Meet space belong to the host.

The key is the JSON key file Google issues for the service account (`type:
service_account`), given as a path or as its contents from the secret store. It is loaded
once here so that a bad key stops start-up with a message naming the setting -- never
quoting the key.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

SCOPES: tuple[str, ...] = (
    # Create, move and delete the host's event, and have Calendar make its Meet space.
    "https://www.googleapis.com/auth/calendar.events",
    # Read and change the settings of the host's spaces, including ones Calendar made.
    "https://www.googleapis.com/auth/meetings.space.settings",
    # endActiveConference is only offered under this scope.
    "https://www.googleapis.com/auth/meetings.space.created",
    # Conference records and participants of spaces the app did not create itself.
    "https://www.googleapis.com/auth/meetings.space.readonly",
)

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
MIN_RSA_BITS = 2048


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https(value: HttpUrl) -> HttpUrl:
    """Tokens and keys' assertions travel over these URLs: clear text only to loopback."""
    if value.scheme != "https" and not _is_loopback(value.host):
        raise ValueError("use an https:// URL: access tokens are sent to it")
    if value.query or value.fragment:
        raise ValueError("remove the query string and fragment")
    return value


@dataclass(frozen=True)
class ServiceAccountKey:
    """The parts of a service-account key the JWT bearer grant needs; `repr` hides the key."""

    client_email: str
    key_id: str
    token_uri: str
    private_key: RSAPrivateKey = field(repr=False)


class _KeyFile(BaseModel):
    """The fields of Google's JSON key file we rely on (others are ignored)."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    type: str
    client_email: str = Field(min_length=3)
    private_key_id: str = Field(min_length=1)
    private_key: SecretStr
    token_uri: HttpUrl = HttpUrl(DEFAULT_TOKEN_URI)


class GoogleMeetConfig(BaseModel):
    """How to act for Workspace users on Calendar and Meet (see the module docstring)."""

    # Validation errors would otherwise quote the raw input, the private key included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    service_account_file: Path | None = Field(
        default=None, description="Path to the service account's JSON key file."
    )
    service_account_key: SecretStr | None = Field(
        default=None, description="The JSON key file's contents (from the secret store)."
    )
    delegated_user: str | None = Field(
        default=None,
        min_length=3,
        description="Act as this one user for every meeting. Unset: act as each host, "
        "so the host owns the event and the space.",
    )
    calendar_id: str = Field(default="primary", min_length=1)
    calendar_base_url: HttpUrl = HttpUrl("https://www.googleapis.com/calendar/v3")
    meet_base_url: HttpUrl = HttpUrl("https://meet.googleapis.com")
    token_uri: HttpUrl | None = Field(
        default=None, description="Overrides the key file's token_uri (tests only)."
    )
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    conference_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="How long to wait for Calendar to finish creating the Meet conference.",
    )

    @field_validator("calendar_base_url", "meet_base_url", "token_uri")
    @classmethod
    def _https(cls, value: HttpUrl | None) -> HttpUrl | None:
        return None if value is None else require_https(value)

    @model_validator(mode="after")
    def _one_key(self) -> GoogleMeetConfig:
        if (self.service_account_file is None) == (self.service_account_key is None):
            raise ValueError("set exactly one of service_account_file and service_account_key")
        self.load_key()  # a bad key stops start-up here, as a settings error
        return self

    def load_key(self) -> ServiceAccountKey:
        """Read and check the service-account key.

        Raises:
            ValueError: the key is missing, not a service-account key, not RSA or too
                small. The message names the setting, never the key.
        """
        source, raw = self._raw_key()
        try:
            data: Any = json.loads(raw)
            parsed = _KeyFile.model_validate(data)
        except (ValueError, ValidationError):
            raise ValueError(f"{source} is not a service-account JSON key file") from None
        if parsed.type != "service_account":
            raise ValueError(
                f"{source} is a {parsed.type!r} key; create a service account "
                "key (type service_account)"
            )
        try:
            key = serialization.load_pem_private_key(
                parsed.private_key.get_secret_value().encode(), password=None
            )
        except (TypeError, ValueError):
            raise ValueError(f"{source}: private_key is not an unencrypted PEM key") from None
        if not isinstance(key, RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{source}: private_key must be RSA of at least {MIN_RSA_BITS} bits")
        token_uri = require_https(self.token_uri or parsed.token_uri)
        return ServiceAccountKey(
            client_email=parsed.client_email,
            key_id=parsed.private_key_id,
            token_uri=str(token_uri),
            private_key=key,
        )

    def _raw_key(self) -> tuple[str, str]:
        if self.service_account_key is not None:
            return "service_account_key", self.service_account_key.get_secret_value()
        path = self.service_account_file
        if path is None:
            raise ValueError("set service_account_file or service_account_key")
        try:
            return "service_account_file", path.read_text()
        except OSError as exc:
            raise ValueError(f"service_account_file {path}: cannot read ({exc.strerror})") from None

    @property
    def calendar_base(self) -> str:
        return str(self.calendar_base_url).rstrip("/")

    @property
    def meet_base(self) -> str:
        return str(self.meet_base_url).rstrip("/")
