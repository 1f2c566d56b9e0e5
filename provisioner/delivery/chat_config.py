"""Settings for the chat channels (`[channels.slack]`, `[channels.teams_chat]`) and the
one error both share.

There is deliberately no setting that names a destination: no channel name, channel id,
team or webhook. Each message goes to the direct-message conversation opened with the
recipient the worker hands over, so no configuration can turn a private delivery into a
post in a shared space. The models forbid unknown keys, so a `channel = "#general"`
added by hand is refused at start-up instead of being ignored.

    ChannelRejected (delivery/base.py)
    └── ChatUserNotFound    the recipient has no chat account: the worker falls back to email
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from provisioner.delivery.base import ChannelRejected

# A tenant is a GUID or a verified domain; client credentials need one definite tenant,
# so the multi-tenant aliases are refused.
_TENANT_PATTERN = re.compile(
    r"^(?:[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
    r"|(?=.{3,253}$)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)$"
)


class ChatUserNotFound(ChannelRejected):
    """The chat service has no user for the recipient's email address.

    A subclass of `ChannelRejected` (retrying will not create the account), typed apart
    so the worker can send the same delivery by email instead and say so.
    """

    code: ClassVar[str] = "chat-user-not-found"
    title: ClassVar[str] = "The recipient has no account on this chat service"


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _require_https(value: HttpUrl) -> HttpUrl:
    """Bot tokens and join links travel over these URLs: no clear text off this machine."""
    if value.scheme != "https" and not _is_loopback(value.host):
        raise PydanticCustomError("https_required", "use an https:// URL: tokens are sent to it")
    if value.query or value.fragment:
        raise PydanticCustomError("plain_url", "remove the query string and fragment")
    return value


def _require_secret(value: SecretStr, setting: str) -> SecretStr:
    if not value.get_secret_value().strip():
        raise PydanticCustomError(
            "secret_missing",
            "{setting} is empty: set it from the secret store",
            {"setting": setting},
        )
    return value


class SlackConfig(BaseModel):
    """A Slack app's bot token and where Slack's Web API lives (tests point it at Prism).

    The token must be a bot token (`xoxb-`): a user token would send every invitation as
    that person, from their own DMs.
    """

    # Validation errors would otherwise quote the raw input, the token included.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    bot_token: SecretStr = Field(description="Bot User OAuth Token (xoxb-...).")
    base_url: HttpUrl = Field(
        default=HttpUrl("https://slack.com/api"), description="Slack Web API base URL."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        _require_secret(value, "channels.slack.bot_token")
        if not value.get_secret_value().startswith("xoxb-"):
            raise PydanticCustomError(
                "bot_token_required", "use the app's bot token (it starts with xoxb-)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        return _require_https(value)

    @property
    def api_base(self) -> str:
        return str(self.base_url).rstrip("/")


class TeamsChatConfig(BaseModel):
    """An Entra ID app that opens one-to-one Teams chats between a sender account and
    each recipient, and posts the invitation there.

    `grant` chooses how the app gets its Graph token:

    - `client_credentials`: the app signs in as itself (application permissions). Graph
      lets such a token create the chat but allows posting chat messages with application
      permissions only for message import (Teamwork.Migrate.All), so in a real tenant the
      post is refused; see docs/channels.md.
    - `refresh_token`: delegated, as the `sender_user_id` account, from a refresh token
      obtained once with ChatMessage.Send, Chat.Create and offline_access. This is the
      mode Microsoft supports for sending.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    tenant_id: str = Field(description="Directory (tenant) ID: a GUID or a verified domain.")
    client_id: str = Field(min_length=1, description="Application (client) ID.")
    client_secret: SecretStr = Field(description="A client secret of the app registration.")
    sender_user_id: str = Field(
        min_length=1,
        description="Object id or UPN of the account the chats are opened with (the other "
        "member of every one-to-one chat).",
    )
    grant: Literal["client_credentials", "refresh_token"] = "client_credentials"
    refresh_token: SecretStr | None = Field(
        default=None, description="The sender account's refresh token (grant=refresh_token)."
    )
    base_url: HttpUrl = Field(
        default=HttpUrl("https://graph.microsoft.com/v1.0"),
        description="Graph base URL where requests go (tests point it at Prism).",
    )
    bind_base_url: HttpUrl = Field(
        default=HttpUrl("https://graph.microsoft.com/v1.0"),
        description="Graph base used inside `user@odata.bind` references (national clouds "
        "differ); independent of base_url because Graph resolves it, not us.",
    )
    login_base_url: HttpUrl = HttpUrl("https://login.microsoftonline.com")
    token_url: HttpUrl | None = Field(
        default=None,
        description="Token endpoint; default <login_base_url>/<tenant_id>/oauth2/v2.0/token.",
    )
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    @field_validator("tenant_id")
    @classmethod
    def _definite_tenant(cls, value: str) -> str:
        if value.lower() in {"common", "organizations", "consumers"} or not (
            _TENANT_PATTERN.match(value)
        ):
            raise PydanticCustomError(
                "tenant", "use the tenant's GUID or verified domain, not common/organizations"
            )
        return value

    @field_validator("client_secret")
    @classmethod
    def _secret_present(cls, value: SecretStr) -> SecretStr:
        return _require_secret(value, "channels.teams_chat.client_secret")

    @field_validator("refresh_token")
    @classmethod
    def _refresh_present(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else _require_secret(value, "refresh_token")

    @field_validator("base_url", "login_base_url", "token_url")
    @classmethod
    def _https(cls, value: HttpUrl | None) -> HttpUrl | None:
        return None if value is None else _require_https(value)

    @model_validator(mode="after")
    def _refresh_token_for_grant(self) -> TeamsChatConfig:
        if self.grant == "refresh_token" and self.refresh_token is None:
            raise ValueError("grant = 'refresh_token' needs channels.teams_chat.refresh_token")
        return self

    @property
    def api_base(self) -> str:
        return str(self.base_url).rstrip("/")

    @property
    def bind_base(self) -> str:
        return str(self.bind_base_url).rstrip("/")

    @property
    def resolved_token_url(self) -> str:
        if self.token_url is not None:
            return str(self.token_url)
        return f"{str(self.login_base_url).rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"
