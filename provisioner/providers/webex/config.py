"""Settings for Webex Meetings: a `[providers.webex]` table, validated at start-up.

Webex is reached with an OAuth access token from a Webex service app (admin-authorised,
acting for any host on the site) or an integration (acting for the user who authorised
it). Give either a static `access_token`, or `client_id` + `client_secret` +
`refresh_token`, in which case access tokens are obtained and renewed with the
`refresh_token` grant. Secrets are `SecretStr`, and validation errors never quote input.
"""

from __future__ import annotations

import ipaddress

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)


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


class WebexConfig(BaseModel):
    """How to reach one Webex site (see docs/providers/webex.md)."""

    # Validation errors would otherwise quote the raw input, secrets included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    api_url: HttpUrl = Field(
        default=HttpUrl("https://webexapis.com/v1"),
        description="The REST API base URL (tests point it at Prism or the simulator).",
    )
    access_token: SecretStr | None = Field(
        default=None, description="A static access token (service app or integration)."
    )
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    token_url: HttpUrl = Field(
        default=HttpUrl("https://webexapis.com/v1/access_token"),
        description="Where the refresh_token grant is sent.",
    )
    act_for_host: bool = Field(
        default=True,
        description="Send `hostEmail` so a service app (admin-level scopes) schedules "
        "each meeting for its requester. Set false for an integration token, which "
        "schedules as the user who authorised it.",
    )
    site_url: str | None = Field(
        default=None, min_length=1, description="The Webex site, e.g. example.webex.com."
    )
    max_passcode_length: int = Field(
        default=16,
        ge=4,
        le=64,
        description="The longest meeting password the site accepts; a policy asking for "
        "longer is refused rather than shortened.",
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    max_attempts: int = Field(default=4, ge=1, le=8)

    @field_validator("api_url", "token_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        """Tokens and join links travel on these connections: no clear text off-machine."""
        if value.scheme != "https" and not is_loopback(value.host):
            raise ValueError("use an https:// URL (plain http only for 127.0.0.1 test servers)")
        if value.query or value.fragment:
            raise ValueError("remove the query string and fragment")
        return value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> WebexConfig:
        refresh = (self.client_id, self.client_secret, self.refresh_token)
        if any(part is not None for part in refresh) and not all(
            part is not None for part in refresh
        ):
            raise ValueError(
                "token refresh needs all of client_id, client_secret and refresh_token"
            )
        if self.access_token is None and self.refresh_token is None:
            raise ValueError(
                "set access_token, or client_id + client_secret + refresh_token "
                "(PROVISIONER_PROVIDERS__WEBEX__... in the environment)"
            )
        return self

    @property
    def api_base(self) -> str:
        return str(self.api_url).rstrip("/")

    @property
    def refreshes(self) -> bool:
        return self.refresh_token is not None
