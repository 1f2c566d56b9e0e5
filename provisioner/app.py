"""`create_app(settings)`: the FastAPI application with every router and its lifespan.

The lifespan builds everything the app holds -- database, cipher, policy, providers,
channels, token verifier, delivery worker -- once, and closes it on shutdown. Nothing is
built at import time, so tests construct `Settings(...)` and call `create_app` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute

from provisioner import health, heap, web
from provisioner.actions import routes as action_routes
from provisioner.actions.service import HostActionLinks
from provisioner.actions.tokens import ActionLinkSigner
from provisioner.admin import routes as admin_routes
from provisioner.auth.bearer import BearerVerifier, JwksCache
from provisioner.briefing import routes as briefing_routes
from provisioner.crypto import cipher_from_settings
from provisioner.db import Database, create_engine
from provisioner.delivery.base import Channel
from provisioner.delivery.email import EmailChannel
from provisioner.delivery.slack import SlackChannel
from provisioner.delivery.teams_chat import TeamsChatChannel
from provisioner.delivery.worker import DeliveryWorker
from provisioner.incidents import pages as incident_pages
from provisioner.incidents import routes as incident_routes
from provisioner.incidents.limits import incident_body_limits
from provisioner.meetings import routes as meeting_routes
from provisioner.meetings.reconcile import reconcile_periodically, reconcile_stale
from provisioner.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from provisioner.nul_guard import NulGuardMiddleware
from provisioner.observability import http as observability_http
from provisioner.observability.metrics import Metrics
from provisioner.observability.tracing import install_tracing
from provisioner.policy import routes as policy_routes
from provisioner.policy.document import load_policy
from provisioner.policy.errors import InvalidPolicy
from provisioner.problems import PROBLEM_JSON, add_exception_handlers
from provisioner.providers.registry import ProviderConfigError, build_providers
from provisioner.ratelimit import RateLimiter
from provisioner.scan import pages as scan_pages
from provisioner.scan import routes as scan_routes
from provisioner.secrets.runtime import load_secrets
from provisioner.settings import Settings, SettingsError
from provisioner.state import AppState

log = structlog.get_logger(__name__)


def _operation_id(route: APIRoute) -> str:
    """Stable `{tag}-{name}` operation ids, so generated clients keep their method names."""
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def build_state(settings: Settings) -> AppState:
    """Everything the app holds, validated up front so a bad config stops start-up."""
    # Secret references (env:, file:, vault:, aws:) become values before anything uses them.
    settings, secrets_runtime = load_secrets(settings)
    if not settings.auth.issuer:
        raise _config_error("auth.issuer", "required")
    if settings.auth.jwks_url is None and settings.auth.jwks_file is None:
        raise _config_error("auth.jwks_url", "set it (or auth.jwks_file)")
    if settings.auth.jwks_file is not None and not settings.auth.jwks_file.is_file():
        raise _config_error("auth.jwks_file", f"{settings.auth.jwks_file}: no such file")
    try:
        cipher = cipher_from_settings(
            settings.security, development=settings.environment == "development"
        )
    except ValueError as exc:
        raise _config_error("security.data_keys", exc) from None
    try:
        channels: dict[str, Channel] = {"email": EmailChannel.from_settings(settings.email)}
        if settings.channels.slack is not None:
            channels["slack"] = SlackChannel.from_settings(settings.channels.slack)
        if settings.channels.teams_chat is not None:
            channels["teams_chat"] = TeamsChatChannel.from_settings(settings.channels.teams_chat)
    except ValueError as exc:
        raise _config_error("email", exc) from None
    try:
        policy = load_policy(settings.policy_file)
    except InvalidPolicy as exc:
        raise _config_error("policy_file", exc.detail) from None
    except OSError as exc:
        raise _config_error("policy_file", f"{settings.policy_file}: {exc.strerror}") from None
    try:
        providers = build_providers(settings.providers)
    except ProviderConfigError as exc:
        raise SettingsError(f"invalid configuration:\n  {exc}") from None
    db = Database(create_engine(settings.database))
    return AppState(
        settings=settings,
        db=db,
        cipher=cipher,
        policy=policy,
        providers=providers,
        channels=channels,
        verifier=BearerVerifier(
            settings.auth, JwksCache(settings.auth), roles=settings.roles.groups
        ),
        worker=DeliveryWorker(
            db,
            channels,
            cipher=cipher,
            settings=settings.worker,
            action_links=HostActionLinks(
                signer=ActionLinkSigner.from_cipher(cipher),
                base_url=settings.api.public_url,
                settings=settings.actions,
            ),
        ),
        secrets=secrets_runtime,
    )


def _config_error(key: str, reason: object) -> SettingsError:
    return SettingsError(f"invalid configuration:\n  {key}: {reason}")


async def close_state(state: AppState) -> None:
    for provider in state.providers.values():
        await provider.aclose()
    for channel in state.channels.values():
        await channel.aclose()
    await state.db.dispose()
    if state.secrets is not None:
        await state.secrets.aclose()


def create_app(
    settings: Settings,
    *,
    state: AppState | None = None,
    run_worker: bool | None = None,
    settle_heap: bool = False,
) -> FastAPI:
    """The application. Pass `state` to share one (tests, the demo); else it is built here.

    `settle_heap=True` (what `provisioner serve` passes) tunes the garbage collector once
    the lifespan has started (`provisioner.heap`); never in a process that builds many apps.
    """
    embedded_worker = settings.worker.embedded if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = state is None
        app_state = state or build_state(settings)
        app.state.provisioner = app_state
        app_state.worker.metrics = app.state.metrics
        await reconcile_stale(
            app_state.db, settings=settings.idempotency, providers=app_state.providers
        )
        stop = asyncio.Event()
        worker_task = asyncio.create_task(app_state.worker.run(stop)) if embedded_worker else None
        reconcile_task = (
            asyncio.create_task(
                reconcile_periodically(
                    app_state.db,
                    settings=settings.idempotency,
                    providers=app_state.providers,
                    stop=stop,
                )
            )
            if embedded_worker
            else None
        )
        watcher_task = None
        if embedded_worker and settings.watcher.enabled:
            # A single-process install (`serve` with the embedded worker) watches attendance
            # too; with separate workers, `provisioner worker` runs the watcher instead.
            from provisioner.meetings.watcher import AttendanceWatcher

            watcher = AttendanceWatcher(
                app_state.db,
                app_state.providers,
                settings=settings.watcher,
                public_url=settings.api.public_url,
                on_queued=app_state.worker.wake,
            )
            watcher_task = asyncio.create_task(watcher.run(stop))
        secrets_task = None
        if app_state.secrets is not None and isinstance(app_state.providers, MutableMapping):
            # Re-reads secrets every cache TTL; a rotated provider secret swaps the provider.
            secrets_task = asyncio.create_task(
                app_state.secrets.watch(stop, providers=app_state.providers)
            )
        frozen = heap.settle() if settle_heap else None  # last: start-up is over
        log.info(
            "app.started",
            providers=sorted(app_state.providers),
            embedded_worker=embedded_worker,
            heap_frozen=frozen,
        )
        try:
            yield
        finally:
            stop.set()
            for task in (worker_task, watcher_task, reconcile_task):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if secrets_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await secrets_task
            if owned:
                await close_state(app_state)
            log.info("app.stopped")

    app = FastAPI(
        title="provisioner",
        version="0.1.0",
        summary="Unique, passcode-protected, sign-in-required meetings, delivered privately.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # Our own /docs (web/api_docs.py): FastAPI's loads Swagger UI from a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    # Per app, not the global registry: tests and the demo build several apps per process.
    app.state.metrics = Metrics()
    if state is not None:
        app.state.provisioner = state
        state.worker.metrics = app.state.metrics
    add_exception_handlers(app)
    app.add_middleware(NulGuardMiddleware)  # inside the size limit: reads bounded bodies
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.api.max_body_bytes,
        larger=incident_body_limits(settings),
    )
    https = settings.api.public_url.startswith("https://")
    issuer = urlsplit(settings.oidc.issuer)
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts_seconds=settings.api.hsts_seconds if https else 0,
        form_targets=(f"{issuer.scheme}://{issuer.netloc}",) if issuer.netloc else (),
    )
    app.state.write_limiter = RateLimiter(
        per_minute=settings.api.write_rate_per_minute, burst=settings.api.write_burst
    )
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(observability_http.MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(observability_http.router)
    app.include_router(meeting_routes.router)
    app.include_router(policy_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(scan_routes.router)
    app.include_router(scan_pages.router)
    app.include_router(incident_routes.router)
    app.include_router(incident_pages.router)
    web.install(app, settings)
    app.include_router(action_routes.router)
    app.include_router(briefing_routes.router)
    _add_problem_schema(app)
    install_tracing(app, settings.observability)  # a no-op unless configured and installed
    return app


def _problems_everywhere(schema: dict[str, Any]) -> None:
    """Make the document say what the API does: every error is problem+json.

    FastAPI documents its own 422 (`HTTPValidationError`, application/json) on every route
    with parameters; ours renders validation errors as problems, so that entry is replaced.
    Routes that take a body also document 413 (the size limit), and routes that need a
    caller (they declare the bearer scheme) 401.
    """
    problem = {
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            answers = operation.setdefault("responses", {})
            if "422" in answers:
                answers["422"] = {"description": "The request is not valid", **problem}
            if "requestBody" in operation:
                answers.setdefault("413", {"description": "Request body too large", **problem})
            if operation.get("security"):
                answers.setdefault("401", {"description": "Authentication required", **problem})
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)


def _add_problem_schema(app: FastAPI) -> None:
    """Register the RFC 9457 Problem schema that every `responses=` entry refers to."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "request_id": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "reason"],
                        "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                    },
                },
            },
        }
        _problems_everywhere(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
