"""Jinja2 for the web pages: autoescaped, strict, with the viewer's time zone at hand.

Times are shown in the zone the browser reported (static/app.js stores
`Intl.DateTimeFormat().resolvedOptions().timeZone` in the `tz` cookie) and fall back to the
meeting's own zone until the browser has told us.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from zoneinfo import available_timezones

import jinja2
from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import HTMLResponse

from provisioner.auth.session import CSRF_FIELD, csrf_token, session_user
from provisioner.delivery.render import format_meeting_time

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates" / "web"
TZ_COOKIE = "tz"


def viewer_zone(request: Request, fallback: str) -> str:
    """The browser's IANA zone from the `tz` cookie, if it names a real one."""
    zone = unquote(request.cookies.get(TZ_COOKIE, ""))  # app.js URI-encodes the "/"
    return zone if zone in _zones() else fallback


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = set(available_timezones())
    return _ZONES


_ZONES: set[str] | None = None


def _make_templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates = Jinja2Templates(env=environment)

    def when(start: datetime, zone: str, end: datetime | None = None) -> str:
        return format_meeting_time(start, zone, end)

    environment.filters["when"] = when
    return templates


TEMPLATES = _make_templates()


def page(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render `template` with the viewer, their CSRF token and time zone in the context.

    The viewer is the one `session_principal` looked up earlier in this request; a page
    whose route never asked (the sign-in failures, say) shows no one signed in.
    """
    base: dict[str, Any] = {
        # As the request's dependencies found it: rendering does not query the database.
        "user": session_user(request),
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "viewer_zone": viewer_zone(request, ""),
        "zones": sorted(_zones()),
    }
    response = TEMPLATES.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response
