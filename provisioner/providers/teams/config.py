"""Settings for Microsoft Teams through Microsoft Graph: a `[providers.teams]` table.

The app is an Entra ID (Azure AD) app registration with a client secret that signs in as
itself (client credentials). Graph only lets such an app create meetings for a user when
a Teams administrator has granted it an application access policy for that user
(`New-CsApplicationAccessPolicy` / `Grant-CsApplicationAccessPolicy`), so a refused
create usually means the policy is missing rather than the secret being wrong.

Every contradiction is refused at start-up with a message that says what to change.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

# A tenant is a GUID or a verified domain (contoso.onmicrosoft.com); "common" and
# "organizations" are refused because client credentials need one definite tenant.
_TENANT_PATTERN = re.compile(
    r"^(?:[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
    r"|(?=.{3,253}$)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)$"
)


def is_loopback(host: str | None) -> bool:
    """Plain http is only acceptable towards this machine (tests, a local simulator)."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https(value: HttpUrl) -> HttpUrl:
    """Tokens and join links travel over these URLs: refuse clear text off this machine."""
    if value.scheme != "https" and not is_loopback(value.host):
        raise ValueError("use an https:// URL: access tokens are sent to it")
    if value.query or value.fragment:
        raise ValueError("remove the query string and fragment")
    return value


class TeamsConfig(BaseModel):
    """How to reach Graph for one Microsoft 365 tenant (see the module docstring)."""

    # Validation errors would otherwise quote the raw input, the client secret included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    tenant_id: str = Field(description="Directory (tenant) ID, a GUID or a verified domain.")
    client_id: str = Field(min_length=1, description="Application (client) ID of the app.")
    client_secret: SecretStr = Field(description="A client secret of the app registration.")
    organizer_user_id: str | None = Field(
        default=None,
        min_length=1,
        description="Graph user id (object id or UPN) that organizes every meeting. Unset: "
        "the host's own address is used, so each host needs the access policy.",
    )
    use_calendar_event: bool = Field(
        default=False,
        description="Create an Outlook calendar event with a Teams meeting (needs "
        "Calendars.ReadWrite) instead of a bare onlineMeeting.",
    )
    graph_base_url: HttpUrl = HttpUrl("https://graph.microsoft.com/v1.0")
    login_base_url: HttpUrl = HttpUrl("https://login.microsoftonline.com")
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    @field_validator("tenant_id")
    @classmethod
    def _definite_tenant(cls, value: str) -> str:
        if value.lower() in {"common", "organizations", "consumers"} or not (
            _TENANT_PATTERN.match(value)
        ):
            raise ValueError(
                "use the tenant's GUID or verified domain; client credentials cannot use "
                "common/organizations/consumers"
            )
        return value

    @field_validator("client_secret")
    @classmethod
    def _secret_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError(
                "client_secret is empty: set PROVISIONER_PROVIDERS__TEAMS__"
                "CLIENT_SECRET from the secret store"
            )
        return value

    @field_validator("graph_base_url", "login_base_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        return require_https(value)

    @property
    def graph_base(self) -> str:
        return str(self.graph_base_url).rstrip("/")

    @property
    def token_url(self) -> str:
        return f"{str(self.login_base_url).rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"
