"""Sign-in, callback and sign-out for browsers (the only pages open to anonymous callers)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from joserfc.errors import JoseError

from provisioner.auth.bearer import oversized_claim
from provisioner.auth.deps import StateDep
from provisioner.auth.session import end_session, start_session
from provisioner.settings import Settings
from provisioner.web.deps import CSRF_CHECKED
from provisioner.web.errors import PageForbidden
from provisioner.web.oidc import CLIENT_NAME, OAuth, OAuthError
from provisioner.web.redirects import DEFAULT_NEXT, safe_next
from provisioner.web.render import page

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"], include_in_schema=False)

_NEXT_KEY = "next_after_sign_in"
NextParam = Annotated[str | None, Query(alias="next", max_length=512)]


def _base(settings: Settings) -> str:
    return (settings.oidc.redirect_base or settings.api.public_url).rstrip("/")


def _oauth(request: Request) -> OAuth | None:
    oauth: OAuth | None = getattr(request.app.state, "oauth", None)
    return oauth


def _checked_next(value: str | None) -> str:
    target = safe_next(value)
    if target is None:
        raise PageForbidden("`next` must be a path on this site", scope="next")
    return target


@router.get("/login")
async def sign_in_page(request: Request, next_: NextParam = None) -> Response:
    """The sign-in page: one button that starts the code flow."""
    target = _checked_next(next_)
    return page(
        request,
        "login.html",
        next_path=target,
        configured=_oauth(request) is not None,
        status_code=200 if _oauth(request) is not None else 503,
    )


@router.get("/start")
async def start_sign_in(request: Request, state: StateDep, next_: NextParam = None) -> Response:
    """Redirect to the identity provider (code flow, PKCE S256, state and nonce)."""
    target = _checked_next(next_)
    oauth = _oauth(request)
    if oauth is None:
        return page(request, "login.html", next_path=target, configured=False, status_code=503)
    request.session[_NEXT_KEY] = target
    client: Any = oauth.create_client(CLIENT_NAME)
    response: Response = await client.authorize_redirect(
        request, _base(state.settings) + "/auth/callback"
    )
    return response


@router.get("/callback")
async def callback(request: Request, state: StateDep) -> Response:
    """Finish the code flow: state, PKCE and id_token checked by Authlib, then the session."""
    oauth = _oauth(request)
    if oauth is None:
        return page(
            request, "login.html", next_path=DEFAULT_NEXT, configured=False, status_code=503
        )
    client: Any = oauth.create_client(CLIENT_NAME)
    target = safe_next(request.session.get(_NEXT_KEY)) or DEFAULT_NEXT
    try:
        token: dict[str, Any] = await client.authorize_access_token(request)
    except OAuthError as exc:
        log.info("auth.sign_in_refused", error=exc.error)
        return page(request, "sign_in_failed.html", reason=exc.error, status_code=403)
    except JoseError as exc:  # the id_token failed validation (nonce, aud, iss, signature)
        log.info("auth.sign_in_refused", error=type(exc).__name__)
        return page(request, "sign_in_failed.html", reason="invalid_id_token", status_code=403)
    except httpx.HTTPError as exc:  # the identity provider is unreachable
        log.warning("auth.provider_unavailable", error=type(exc).__name__)
        return page(request, "sign_in_failed.html", reason="provider_unavailable", status_code=503)
    claims = token.get("userinfo") or {}
    if not claims.get("sub") or not claims.get("email"):
        return page(request, "sign_in_failed.html", reason="missing_claims", status_code=403)
    if oversized_claim(claims) is not None:  # too long to store as a host or an actor
        return page(request, "sign_in_failed.html", reason="oversized_claims", status_code=403)
    start_session(
        request,
        claims=claims,
        groups_claim=state.settings.auth.groups_claim,
        id_token=token.get("id_token"),
        lifetime_seconds=state.settings.oidc.session_lifetime_seconds,
    )
    log.info("auth.signed_in", principal_id=str(claims["sub"]))
    return RedirectResponse(target, status_code=303)


@router.post("/logout", dependencies=[CSRF_CHECKED])
async def sign_out(request: Request, state: StateDep) -> Response:
    """End our session, then the identity provider's (RP-initiated logout)."""
    id_token = end_session(request)
    after = _base(state.settings) + "/auth/signed-out"
    oauth = _oauth(request)
    if oauth is None or id_token is None:
        return RedirectResponse("/auth/signed-out", status_code=303)
    client: Any = oauth.create_client(CLIENT_NAME)
    metadata: dict[str, Any] = await client.load_server_metadata()
    endpoint = metadata.get("end_session_endpoint")
    if not endpoint:
        return RedirectResponse("/auth/signed-out", status_code=303)
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": after,
            "client_id": state.settings.oidc.client_id,
        }
    )
    return RedirectResponse(f"{endpoint}?{query}", status_code=303)


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    """Where the identity provider sends the browser after sign-out."""
    return page(request, "signed_out.html")
