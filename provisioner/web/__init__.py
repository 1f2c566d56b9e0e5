"""The browser side: OIDC sign-in, the session cookie, HTML pages and their static files.

`install(app, settings)` is the one call `create_app` makes; everything web-specific (the
session middleware, /static, /docs, the HTML renderings of 401/403) is wired here.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from provisioner.settings import Settings, SettingsError
from provisioner.web import api_docs, auth_routes, pages
from provisioner.web.errors import PageForbidden, SignInRequired
from provisioner.web.oidc import build_oauth
from provisioner.web.redirects import safe_next
from provisioner.web.render import page

__all__ = ["STATIC_DIR", "install"]

log = structlog.get_logger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"


def _session_secret(settings: Settings) -> str:
    configured = settings.oidc.session_secret
    if configured is not None:
        return configured.get_secret_value()
    if settings.environment == "production" and settings.oidc.enabled:
        raise SettingsError("invalid configuration:\n  oidc.session_secret: required")
    # Development: sessions last as long as the process, which is what a developer expects.
    return secrets.token_urlsafe(32)


async def _on_sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)  # noqa: S101 (registered for this class)
    target = safe_next(exc.next_path) or "/meetings"
    return RedirectResponse(f"/auth/login?next={quote(target, safe='/')}", status_code=303)


async def _on_page_forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)  # noqa: S101
    return page(request, "forbidden.html", reason=exc.detail, status_code=403)


def install(app: FastAPI, settings: Settings) -> None:
    app.state.oauth = build_oauth(settings.oidc)
    app.add_middleware(
        SessionMiddleware,
        secret_key=_session_secret(settings),
        session_cookie=settings.oidc.cookie_name,
        max_age=settings.oidc.session_lifetime_seconds,
        same_site="lax",
        https_only=not settings.oidc.insecure_http_cookies,
    )
    app.add_exception_handler(SignInRequired, _on_sign_in_required)
    app.add_exception_handler(PageForbidden, _on_page_forbidden)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_docs.router)
    app.include_router(auth_routes.router)
    app.include_router(pages.router)
