"""The OpenID Connect client for browser sign-in (Authlib's Starlette integration).

Discovery comes from `<issuer>/.well-known/openid-configuration`; Authlib keeps the state,
nonce and PKCE verifier in the session between the redirect and the callback, checks the
state (a replayed or foreign state is refused), and validates the id_token's signature,
expiry and nonce against the provider's published keys.

Issuer and audience are ours to demand: left to itself Authlib compares `iss` with the
discovery document and checks `azp` only when present, so an id_token minted for another
application of the same provider (`aud` = its client id) would sign the user in here.
`id_token_claims_options` is passed to every `authorize_access_token`.
"""

from __future__ import annotations

import warnings
from typing import Any

import authlib.deprecate  # noqa: F401 (installs its "always" filter before ours)
import httpx

with warnings.catch_warnings():
    # Authlib >= 1.7 prefers the httpx2 fork and warns when it falls back to httpx, which
    # it still supports; the rest of provisioner speaks httpx, so one client library it is.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.starlette_client import OAuth, OAuthError

from provisioner.settings import OidcSettings

__all__ = ["CLIENT_NAME", "OAuth", "OAuthError", "build_oauth", "id_token_claims_options"]

CLIENT_NAME = "idp"


def id_token_claims_options(settings: OidcSettings) -> dict[str, Any]:
    """What the id_token must say: issued by our issuer, to our client id (among others).

    The issuer is accepted with or without a trailing slash, the one spelling difference
    a configuration and a provider's discovery document commonly disagree on.
    """
    issuer = settings.issuer.rstrip("/")
    return {
        "iss": {"essential": True, "values": [issuer, issuer + "/"]},
        "aud": {"essential": True, "values": [settings.client_id]},
    }


def build_oauth(
    settings: OidcSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> OAuth | None:
    """The registered client, or None when browser sign-in is not configured.

    `transport` replaces httpx's own for every call to the identity provider (tests).
    """
    if not settings.enabled:
        return None
    oauth = OAuth()
    secret = settings.client_secret.get_secret_value() if settings.client_secret else None
    client_kwargs: dict[str, Any] = {
        "scope": " ".join(settings.scopes),
        "code_challenge_method": "S256",
        "timeout": httpx.Timeout(settings.timeout_seconds),
    }
    if transport is not None:
        client_kwargs["transport"] = transport
    if secret is None:
        client_kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105  public client: PKCE alone
    oauth.register(
        name=CLIENT_NAME,
        client_id=settings.client_id,
        client_secret=secret,
        server_metadata_url=settings.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
    )
    return oauth
