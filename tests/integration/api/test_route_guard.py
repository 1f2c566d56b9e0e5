"""Deny by default: every registered route refuses an anonymous caller.

Public on purpose, and only these: the health probes (orchestrators call them without
credentials), the sign-in pages (you cannot sign in if signing in needs a sign-in), the
static files (CSS and our scripts, nothing private), and the OpenAPI description and its
viewer with its two files (they describe the API, hold no data, and integrators need them
to start).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route

PUBLIC = {
    "/healthz",
    "/readyz",
    "/auth/login",
    "/auth/start",
    "/auth/callback",
    "/auth/signed-out",
    "/openapi.json",
    "/docs",
    "/docs/assets/x",
}
PUBLIC_MOUNTS = {"/static"}


def _app(client: httpx.AsyncClient) -> FastAPI:
    transport = client._transport  # noqa: SLF001 (the ASGI app under test)
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    return app


def _flat(app: FastAPI) -> Iterator[tuple[str, BaseRoute]]:
    """(full path, route) for every route, through included routers.

    FastAPI >= 0.160 keeps included routers as lazy entries in `app.routes`; older
    versions copy each route in. Both are handled, so the walk never misses a router.
    """
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            yield str(getattr(route, "path", "")), route
            continue
        for context in contexts():
            yield str(context.path), context.original_route


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for full_path, route in _flat(app):
        if isinstance(route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"unexpected mount {route.path}"
            continue
        assert isinstance(route, (APIRoute, Route)), route
        path = re.sub(r"\{[^}]+\}", "x", full_path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, path))
    return found


async def test_every_route_refuses_anonymous_callers(client: httpx.AsyncClient) -> None:
    routes = _routes(_app(client))
    assert ("POST", "/api/v1/meetings") in routes and ("GET", "/admin/audit") in routes
    checked = 0
    for method, path in routes:
        if path in PUBLIC:
            continue
        response = await client.request(method, path, json={} if method != "GET" else None)
        refused = response.status_code in (401, 403) or (
            response.status_code == 303 and response.headers["location"].startswith("/auth/login")
        )
        assert refused, f"{method} {path} answered {response.status_code} to an anonymous caller"
        checked += 1
    assert checked >= 15


async def test_public_routes_are_only_the_listed_ones(client: httpx.AsyncClient) -> None:
    paths = {path for _, path in _routes(_app(client))}
    assert PUBLIC <= paths
