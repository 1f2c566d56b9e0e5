"""Settings for Zoom: a `[providers.zoom]` table, validated at start-up.

Zoom is reached through a Server-to-Server OAuth app: the account id, client id and client
secret are exchanged for an hour-long access token (`account_credentials` grant), which
the provider caches and refreshes. Secrets are `SecretStr`, and validation errors never
quote the input, so a typo in the table cannot print a secret into a log.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

# Zoom refuses meeting passcodes longer than 10 characters.
ZOOM_MAX_PASSCODE = 10


def is_loopback(host: str | None) -> bool:
    """Plain http is only acceptable to a test double on this machine."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ZoomConfig(BaseModel):
    """How to reach one Zoom account (see the module docstring and docs/providers/zoom.md)."""

    # Validation errors would otherwise quote the raw input, secrets included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    account_id: str = Field(min_length=1, description="The S2S OAuth app's Account ID.")
    client_id: str = Field(min_length=1, description="The S2S OAuth app's Client ID.")
    client_secret: SecretStr = Field(description="The S2S OAuth app's Client secret.")
    api_url: HttpUrl = Field(
        default=HttpUrl("https://api.zoom.us/v2"),
        description="The REST API base URL (tests point it at Prism or the simulator).",
    )
    oauth_url: HttpUrl = Field(
        default=HttpUrl("https://zoom.us"),
        description="Where `/oauth/token` lives.",
    )
    authentication_option: str | None = Field(
        default=None,
        min_length=1,
        description="The id of the account's 'Sign in to Zoom with specified domains' "
        "authentication option (GET /users/{userId}/settings?option=meeting_authentication). "
        "Needed when the policy limits sign-in to domains; without it such requests are "
        "refused rather than created with any-account sign-in.",
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    max_attempts: int = Field(
        default=4, ge=1, le=8, description="Attempts per call, the first included."
    )
    marker_lookup_pages: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Pages of 300 meetings searched for our marker after an ambiguous "
        "create failure, before trying the create again.",
    )

    @field_validator("api_url", "oauth_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        """Tokens and join links travel on these connections: no clear text off-machine."""
        if value.scheme != "https" and not is_loopback(value.host):
            raise ValueError("use an https:// URL (plain http only for 127.0.0.1 test servers)")
        if value.query or value.fragment:
            raise ValueError("remove the query string and fragment")
        return value

    @property
    def api_base(self) -> str:
        return str(self.api_url).rstrip("/")

    @property
    def token_url(self) -> str:
        return str(self.oauth_url).rstrip("/") + "/oauth/token"
