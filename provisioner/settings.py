"""Typed configuration: a TOML file (path in PROVISIONER_CONFIG) under PROVISIONER_* env vars.

Environment variables win over the file; nested keys use `__`
(`PROVISIONER_DATABASE__URL`). Every section forbids unknown keys so that a typo stops
start-up with the key's name instead of being silently ignored. Nothing builds
`Settings()` at import time: `load_settings()` is called by the CLI and `create_app`
receives the result.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from provisioner.delivery.chat_config import SlackConfig, TeamsChatConfig

CONFIG_ENV = "PROVISIONER_CONFIG"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///./var/provisioner.db"
    echo: bool = False
    pool_size: int = Field(default=10, ge=1, le=200, description="PostgreSQL only.")

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept the plain scheme people paste and switch it to the async driver."""
        for plain, async_ in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if value.startswith(plain):
                return async_ + value[len(plain) :]
        if not value.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://", "postgresql+psycopg://")
        ):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class AuthSettings(Section):
    """Bearer JWTs from the organisation's identity provider."""

    issuer: str = ""
    audience: str = "provisioner"
    jwks_url: str | None = None
    jwks_file: Path | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    groups_claim: str = "groups"
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_refresh_seconds: int = Field(default=300, ge=10)

    @field_validator("algorithms")
    @classmethod
    def _no_symmetric_or_none(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """A shared-secret or unsigned token could be forged by anyone holding the JWKS."""
        allowed = {
            "RS256",
            "RS384",
            "RS512",
            "PS256",
            "PS384",
            "PS512",
            "ES256",
            "ES384",
            "ES512",
            "EdDSA",
        }
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(f"unsupported algorithms {bad}; choose from {sorted(allowed)}")
        return value


class SmtpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    ca_file: Path | None = None


class EmailSettings(Section):
    transport: Literal["file", "smtp"] = "file"
    sender: str = "Meetings <provisioner@localhost>"
    file_dir: Path = Path("./var/outbox")
    smtp: SmtpSettings = SmtpSettings()


class ChannelsSettings(Section):
    """Chat channels for private delivery; each is off until configured (see docs/channels.md)."""

    slack: SlackConfig | None = None
    teams_chat: TeamsChatConfig | None = None


class WorkerSettings(Section):
    embedded: bool = Field(default=True, description="Run the delivery worker inside `serve`.")
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=20, ge=1, le=500)
    max_attempts: int = Field(
        default=6,
        ge=1,
        le=50,
        description="Attempts before a failing message may be dead-lettered; a temporary "
        "failure (relay down, 4xx) also needs `give_up_after_hours` to have passed.",
    )
    give_up_after_hours: float = Field(
        default=24.0,
        ge=0,
        le=720,
        description="How long temporary failures are retried (every `backoff_max_seconds` "
        "at most) before the message is dead-lettered: a relay down for maintenance "
        "must not lose invitations. 0 gives up after `max_attempts` alone.",
    )
    backoff_base_seconds: float = Field(default=5.0, gt=0)
    backoff_max_seconds: float = Field(default=900.0, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    alert_emails: tuple[str, ...] = Field(
        default=(),
        description="IT addresses told (privately, by email) about every dead-lettered "
        "message, besides the meeting's host.",
    )


class WatcherSettings(Section):
    """The attendance watcher (README "Attendance check"): while a meeting is running on a
    provider that lists participants, compare them with the invite list every
    `interval_seconds` and tell the host privately about each unknown participant, once.
    Runs inside `provisioner worker`, next to the delivery worker."""

    enabled: bool = Field(default=False, description="Run the attendance watcher.")
    interval_seconds: float = Field(default=60.0, ge=5, le=3600)


class SecuritySettings(Section):
    """Keys for encrypting passcodes and join links at rest (AES-256-GCM).

    `data_keys` maps a key id to a base64 32-byte key; `active_key` encrypts, every key
    listed decrypts. When no key is configured in development, a key file is created in
    `data_key_file`; elsewhere start-up refuses to run without one.
    """

    data_keys: dict[str, SecretStr] = Field(default_factory=dict)
    active_key: str | None = None
    data_key_file: Path = Path("./var/data-key")


class IdempotencySettings(Section):
    retention_hours: int = Field(default=24, ge=24)
    wait_seconds: float = Field(default=10.0, ge=0, le=60)
    stale_after_seconds: float = Field(default=300.0, gt=0)


class ApiSettings(Section):
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_invitees: int = Field(default=300, ge=1, le=5000)
    public_url: str = "http://127.0.0.1:8000"
    write_rate_per_minute: int = Field(
        default=60, ge=1, description="Writes (create, change, cancel, end) per caller."
    )
    write_burst: int = Field(default=20, ge=1)
    hsts_seconds: int = Field(
        default=31_536_000, ge=0, description="Strict-Transport-Security when public_url is https."
    )


class OidcSettings(Section):
    """Browser sign-in with the organisation's OpenID provider (authorization code + PKCE).

    Empty `issuer` disables browser sign-in (the API still takes bearer tokens). The
    session cookie is signed with `session_secret`; in development a random one is made
    per process when it is unset, so sessions end on restart.
    """

    issuer: str = ""
    client_id: str = "provisioner-web"
    client_secret: SecretStr | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")
    redirect_base: str | None = Field(
        default=None, description="Public base URL for /auth/callback; default api.public_url."
    )
    cookie_name: str = Field(default="provisioner_session", pattern=r"^[A-Za-z0-9_.-]+$")
    session_lifetime_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    session_secret: SecretStr | None = None
    insecure_http_cookies: bool = Field(
        default=False, description="Drop the cookie's Secure flag: local http only."
    )
    timeout_seconds: float = Field(default=10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


RoleName = Literal["employee", "it-admin", "responder"]


def _default_role_groups() -> dict[str, tuple[RoleName, ...]]:
    return {"employees": ("employee",), "it-admins": ("it-admin",), "responders": ("responder",)}


class RolesSettings(Section):
    """Which groups (from `auth.groups_claim`) grant which role; no group, no role."""

    groups: dict[str, tuple[RoleName, ...]] = Field(default_factory=_default_role_groups)


class ObservabilitySettings(Section):
    """Prometheus `/metrics` and optional OpenTelemetry tracing (README "Observability").

    `/metrics` needs credentials unless `metrics_public`: a bearer token with the it-admin
    role, or the static `metrics_token` (a scraper's; `env:`/`file:`/`vault:` references
    work). Tracing is on only when `otlp_endpoint` is set and the `otel` extra is installed.
    """

    metrics_public: bool = Field(
        default=False, description="Serve /metrics to anyone: only behind a private network."
    )
    metrics_token: SecretStr | None = None
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces."
    )
    service_name: str = "provisioner"


_BOOTSTRAP_SCHEMES = ("env:", "file:")


class VaultSettings(Section):
    """HashiCorp Vault or OpenBao (KV v2). Its own credentials come from env: or file:."""

    address: str = "http://127.0.0.1:8200"
    auth: Literal["token", "approle", "kubernetes"] = "token"
    token: str | None = Field(default=None, description="auth=token: env:/file: reference.")
    role_id: str | None = Field(default=None, description="auth=approle: env:/file: reference.")
    secret_id: str | None = Field(default=None, description="auth=approle: env:/file: reference.")
    approle_mount: str = "approle"
    kubernetes_role: str | None = None
    kubernetes_mount: str = "kubernetes"
    kubernetes_jwt_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    namespace: str | None = None
    ca_file: Path | None = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _credentials_are_references(self) -> VaultSettings:
        """Vault's own credentials cannot live in Vault, nor in the config file in clear."""
        needed = {
            "token": ("token",),
            "approle": ("role_id", "secret_id"),
            "kubernetes": ("kubernetes_role",),
        }[self.auth]
        for name in needed:
            if not getattr(self, name):
                raise ValueError(f"auth={self.auth} needs {name}")
        for name in ("token", "role_id", "secret_id"):
            value = getattr(self, name)
            if value is not None and not value.startswith(_BOOTSTRAP_SCHEMES):
                raise ValueError(f"{name} must be an env: or file: reference, not a value")
        return self


class AwsSecretsSettings(Section):
    """AWS Secrets Manager; credentials from boto3's usual chain."""

    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="e.g. a VPC endpoint or moto.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)


class SecretsSettings(Section):
    """Where `vault:` and `aws:` references are read, and how long values are cached.

    `env:` and `file:` references always work. A value is read again after
    `cache_ttl_seconds` (so rotation is picked up without a restart); while its store is
    down, the cached value keeps serving for `max_stale_seconds` and /readyz says degraded.
    """

    cache_ttl_seconds: float = Field(default=300.0, gt=0)
    max_stale_seconds: float = Field(default=3600.0, ge=0)
    vault: VaultSettings | None = None
    aws: AwsSecretsSettings | None = None


def default_abuse_contacts() -> dict[str, str]:
    """Where each provider takes abuse reports (a page or an address); override per tenant."""
    return {
        "zoom": "https://zoom.us/trust/report",
        "teams": "https://msrc.microsoft.com/report/abuse",
        "google_meet": "https://support.google.com/meet/answer/10212037",
        "webex": "https://www.cisco.com/c/en/us/about/contact-cisco.html",
        "jitsi": "your own Jitsi operators (set incidents.provider_contacts.jitsi)",
    }


class IncidentsSettings(Section):
    """Who hears of an incident report, and what a report may carry."""

    notify_emails: tuple[str, ...] = Field(
        default=(), description="HR / security addresses told of every new incident."
    )
    managers: dict[str, str] = Field(
        default_factory=dict,
        description="Reporter email -> manager email, used when the sign-in carries no "
        "manager claim.",
    )
    max_attachments: int = Field(default=5, ge=0, le=20)
    max_attachment_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Per file; the report routes accept max_attachments of these.",
    )
    attachment_types: tuple[str, ...] = (
        "image/png",
        "image/jpeg",
        "application/pdf",
        "text/plain",
    )
    provider_contacts: dict[str, str] = Field(default_factory=default_abuse_contacts)
    training_url: str | None = Field(
        default=None, description="Security training the host is asked to complete."
    )


class ActionsSettings(Section):
    """The host's one-click emergency links (end now, rotate the link, report).

    A link works until `margin_minutes` after the meeting's end, and never longer than
    `max_lifetime_days` after the message carrying it was rendered.
    """

    margin_minutes: int = Field(default=120, ge=0, le=1440)
    max_lifetime_days: int = Field(default=60, ge=1, le=365)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PROVISIONER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    environment: Literal["development", "production"] = "development"
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    policy_file: Path = Path("config/policy.yaml")
    default_provider: str = "jitsi"
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    email: EmailSettings = EmailSettings()
    channels: ChannelsSettings = ChannelsSettings()
    worker: WorkerSettings = WorkerSettings()
    watcher: WatcherSettings = WatcherSettings()
    security: SecuritySettings = SecuritySettings()
    secrets: SecretsSettings = SecretsSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    api: ApiSettings = ApiSettings()
    oidc: OidcSettings = OidcSettings()
    roles: RolesSettings = RolesSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    actions: ActionsSettings = ActionsSettings()
    incidents: IncidentsSettings = IncidentsSettings()
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="One table per configured provider, validated by that provider's model.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV)
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)


class SettingsError(Exception):
    """Start-up configuration is wrong; the message names every offending key."""


def _environment_error(exc: PydanticSettingsError) -> str:
    """pydantic-settings' message names the field (`error parsing value for field "x" from
    source "EnvSettingsSource"`); only that part is kept, the value is never quoted."""
    field = re.search(r'field "([^"]+)"', str(exc))
    name = f"PROVISIONER_{field.group(1).upper()}" if field else "a PROVISIONER_ variable"
    return f"{name}: not valid JSON for this table (or a nested __ variable is malformed)"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from file and environment, turning validation errors into one message."""
    config = os.environ.get(CONFIG_ENV)
    if config and not Path(config).is_file():
        raise SettingsError(f"{CONFIG_ENV}={config}: no such file")
    known = {name.upper() for name in Settings.model_fields} | {"CONFIG"}
    unknown = sorted(
        name
        for name in os.environ
        if name.startswith("PROVISIONER_")
        and name.removeprefix("PROVISIONER_").split("__")[0] not in known
        and not name.startswith("PROVISIONER_TEST_")
    )
    if unknown:
        raise SettingsError(
            "invalid configuration:\n" + "\n".join(f"  {name}: unknown setting" for name in unknown)
        )
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:  # the message says where, never a value
        raise SettingsError(f"invalid configuration:\n  {CONFIG_ENV}={config}: {exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(
            f"invalid configuration:\n  {CONFIG_ENV}={config}: not UTF-8 text"
        ) from None
    except PydanticSettingsError as exc:  # a complex value in the environment is not JSON
        raise SettingsError(f"invalid configuration:\n  {_environment_error(exc)}") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            lines.append(f"  {key}: {reason}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
