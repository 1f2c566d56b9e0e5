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
from provisioner.auth.session import end_session, session_principal, start_session
from provisioner.settings import Settings
from provisioner.web.deps import CSRF_CHECKED
from provisioner.web.errors import PageForbidden
from provisioner.web.oidc import CLIENT_NAME, OAuth, OAuthError, id_token_claims_options
from provisioner.web.redirects import DEFAULT_NEXT, safe_next
from provisioner.web.render import page

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/auth", tags=["auth"], include_in_schema=False)

# What a failed sign-in page says, by reason. The OAuth 2.0 / OpenID Connect error codes an
# identity provider may put in `?error=` (RFC 6749 4.1.2.1, OIDC Core 3.1.2.6), Authlib's
# own codes and ours. Anything else arrives from whoever built the link and is neither
# shown nor logged as it is: the page would otherwise say whatever a phishing link wants.
_PROVIDER_REFUSED = "The identity provider did not sign you in."
_START_AGAIN = "The sign-in could not be completed; it may have taken too long."
SIGN_IN_FAILURES: dict[str, str] = {
    "access_denied": "The sign-in was cancelled or refused at the identity provider.",
    "login_required": "The identity provider needs you to sign in there first.",
    "consent_required": "The identity provider needs your consent for this application.",
    "interaction_required": "The identity provider needs you to complete a step there.",
    "account_selection_required": "The identity provider needs you to choose an account.",
    "invalid_request": _PROVIDER_REFUSED,
    "invalid_request_uri": _PROVIDER_REFUSED,
    "invalid_request_object": _PROVIDER_REFUSED,
    "request_not_supported": _PROVIDER_REFUSED,
    "request_uri_not_supported": _PROVIDER_REFUSED,
    "registration_not_supported": _PROVIDER_REFUSED,
    "unauthorized_client": "This application may not sign you in; tell IT.",
    "unsupported_response_type": "This application may not sign you in; tell IT.",
    "invalid_scope": "This application may not sign you in; tell IT.",
    "server_error": "The identity provider had an error. Try again in a moment.",
    "temporarily_unavailable": "The identity provider is busy. Try again in a moment.",
    "mismatching_state": _START_AGAIN,
    "missing_token": _START_AGAIN,
    "invalid_grant": _START_AGAIN,
    "invalid_id_token": "The identity provider's answer could not be verified.",
    "provider_unavailable": "The identity provider cannot be reached. Try again in a moment.",
    "missing_claims": "The identity provider did not tell us your e-mail address.",
    "oversized_claims": "The identity provider sent an identity too long to keep.",
}
_UNKNOWN_FAILURE = "other"
# The identity provider cannot be used: unreachable, or an answer that is not JSON (a proxy's
# error page instead of the discovery document or the token response).
_UNAVAILABLE = (httpx.HTTPError, ValueError)
NextParam = Annotated[str | None, Query(alias="next", max_length=512)]

_NEXT_KEY = "next_after_sign_in"


def _base(settings: Settings) -> str:
    return (settings.oidc.redirect_base or settings.api.public_url).rstrip("/")


def _oauth(request: Request) -> OAuth | None:
    oauth: OAuth | None = getattr(request.app.state, "oauth", None)
    return oauth


def _failed(request: Request, reason: str | None, *, status_code: int) -> Response:
    """The sign-in failure page, in our words; `reason` is shown only if we know it."""
    known = reason if reason in SIGN_IN_FAILURES else _UNKNOWN_FAILURE
    message = SIGN_IN_FAILURES.get(known, _PROVIDER_REFUSED)
    return page(
        request, "sign_in_failed.html", reason=known, message=message, status_code=status_code
    )


def _checked_next(value: str | None) -> str:
    target = safe_next(value)
    if target is None:
        raise PageForbidden("`next` must be a path on this site", scope="next")
    return target


@router.get("/login")
async def sign_in_page(request: Request, state: StateDep, next_: NextParam = None) -> Response:
    """The sign-in page: one button that starts the code flow."""
    target = _checked_next(next_)
    # Pages render the user their route looked up; this one shows them if signed in.
    await session_principal(request, state.db, roles=state.settings.roles.groups)
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
    try:
        response: Response = await client.authorize_redirect(
            request, _base(state.settings) + "/auth/callback"
        )
    except _UNAVAILABLE as exc:  # discovery failed: unreachable, or not JSON (a proxy's page)
        log.warning("auth.provider_unavailable", error=type(exc).__name__)
        return _failed(request, "provider_unavailable", status_code=503)
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
        token: dict[str, Any] = await client.authorize_access_token(
            request, claims_options=id_token_claims_options(state.settings.oidc)
        )
    except OAuthError as exc:
        # `exc.error` may be the `?error=` of a forged link: only a known code is logged.
        known = exc.error if exc.error in SIGN_IN_FAILURES else _UNKNOWN_FAILURE
        log.info("auth.sign_in_refused", error=known)
        return _failed(request, exc.error, status_code=403)
    except JoseError as exc:  # the id_token failed validation (nonce, aud, iss, signature)
        log.info("auth.sign_in_refused", error=type(exc).__name__)
        return _failed(request, "invalid_id_token", status_code=403)
    except _UNAVAILABLE as exc:  # the identity provider is unreachable or answers garbage
        log.warning("auth.provider_unavailable", error=type(exc).__name__)
        return _failed(request, "provider_unavailable", status_code=503)
    claims = token.get("userinfo") or {}
    if not claims.get("sub") or not claims.get("email"):
        return _failed(request, "missing_claims", status_code=403)
    if oversized_claim(claims) is not None:  # too long to store as a host or an actor
        return _failed(request, "oversized_claims", status_code=403)
    await start_session(
        request,
        state.db,
        state.cipher,
        claims=claims,
        groups_claim=state.settings.auth.groups_claim,
        id_token=token.get("id_token"),
        lifetime_seconds=state.settings.oidc.session_lifetime_seconds,
    )
    log.info("auth.signed_in", principal_id=str(claims["sub"]))
    return RedirectResponse(target, status_code=303)


@router.post("/logout", dependencies=[CSRF_CHECKED])
async def sign_out(request: Request, state: StateDep) -> Response:
    """End our session, then the identity provider's (RP-initiated logout).

    Ours ends first and whatever happens next: an unreachable identity provider costs the
    user its own sign-out (they are sent to our signed-out page), never ours.
    """
    id_token = await end_session(request, state.db, state.cipher)
    after = _base(state.settings) + "/auth/signed-out"
    oauth = _oauth(request)
    if oauth is None or id_token is None:
        return RedirectResponse("/auth/signed-out", status_code=303)
    client: Any = oauth.create_client(CLIENT_NAME)
    try:
        metadata: dict[str, Any] = await client.load_server_metadata()
    except _UNAVAILABLE as exc:
        log.warning("auth.provider_unavailable", error=type(exc).__name__, during="sign_out")
        return RedirectResponse("/auth/signed-out", status_code=303)
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
