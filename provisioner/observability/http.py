"""The HTTP side of metrics: a timing middleware and the protected `GET /metrics`."""

from __future__ import annotations

import asyncio
import hmac
import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.auth.deps import StateDep, principal_of
from provisioner.auth.errors import PermissionDenied
from provisioner.auth.roles import Role
from provisioner.middleware import route_template
from provisioner.observability.metrics import CONTENT_TYPE, Metrics, bound
from provisioner.observability.queue import queue_depth
from provisioner.state import AppState

log = structlog.get_logger(__name__)

router = APIRouter(tags=["observability"])

QUEUE_DEPTH_TIMEOUT_SECONDS = 5.0


class MetricsMiddleware:
    """Count and time every HTTP request; bind the app's `Metrics` for code below it."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app raises before answering
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            with bound(self.metrics):
                await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.observe_request(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


async def _authorize(request: Request, state: AppState) -> None:
    """Public if configured; else the static scrape token, or a bearer with it-admin."""
    config = state.settings.observability
    if config.metrics_public:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    expected = config.metrics_token
    if (
        expected is not None
        and scheme.lower() == "bearer"
        and token
        and hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        return
    principal = await principal_of(request, state)  # 401 without valid credentials
    if not principal.has_role(Role.IT_ADMIN):
        raise PermissionDenied("metrics need the role it-admin", scope="role")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    """Prometheus text exposition; the queue depth is counted now, with an async query."""
    await _authorize(request, state)
    registry: Metrics = request.app.state.metrics
    try:
        depth = await asyncio.wait_for(queue_depth(state.db), QUEUE_DEPTH_TIMEOUT_SECONDS)
    except Exception as exc:  # a scrape still answers; the gauge keeps its last value
        log.warning("metrics.queue_depth_failed", error_type=type(exc).__name__)
    else:
        registry.queue_depth.set(depth)
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
