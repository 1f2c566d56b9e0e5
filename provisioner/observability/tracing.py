"""Optional OpenTelemetry tracing: a span per request, exported over OTLP/HTTP.

Off unless `observability.otlp_endpoint` is set, and then only if the `otel` extra is
installed (`pip install 'provisioner[otel]'`: opentelemetry-sdk,
opentelemetry-instrumentation-fastapi, opentelemetry-exporter-otlp-proto-http). Without
either it does nothing, so tracing is never a hard dependency. The packages are imported
by name at run time, which keeps them out of the type checker's and the installer's way.
Spans carry route templates and status codes; probes and `/metrics` are not traced.
The instrumentation would also record the raw path and the full URL: a path can be a
credential (`/actions/{token}`, the emergency links) and a query string too (the sign-in
callback's `code`), so `_redact_request` blanks them before the span leaves the process
(the route template is `http.route`), and the client's address as our access log does.
"""

from __future__ import annotations

import importlib
from typing import Any

import structlog
from fastapi import FastAPI

from provisioner.settings import ObservabilitySettings

log = structlog.get_logger(__name__)

EXCLUDED_URLS = "healthz,readyz,metrics"
_MODULES = {
    "resources": "opentelemetry.sdk.resources",
    "trace": "opentelemetry.sdk.trace",
    "export": "opentelemetry.sdk.trace.export",
    "otlp": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "fastapi": "opentelemetry.instrumentation.fastapi",
}


def install_tracing(app: FastAPI, settings: ObservabilitySettings) -> Any | None:
    """Instrument `app` when configured and installed; return the tracer provider or None.

    The provider flushes its batch of spans when the process exits.
    """
    if not settings.otlp_endpoint:
        return None
    try:
        modules = {name: importlib.import_module(path) for name, path in _MODULES.items()}
    except ImportError as exc:
        log.warning("tracing.skipped", missing=exc.name, hint="pip install 'provisioner[otel]'")
        return None
    resource = modules["resources"].Resource.create({"service.name": settings.service_name})
    provider = modules["trace"].TracerProvider(resource=resource)
    exporter = modules["otlp"].OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    provider.add_span_processor(modules["export"].BatchSpanProcessor(exporter))
    modules["fastapi"].FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        server_request_hook=_redact_request,
        # The per-message "http send" / "http receive" spans add nothing but more copies.
        exclude_spans=["receive", "send"],
    )
    log.info("tracing.enabled", service_name=settings.service_name)
    return provider


# Attributes (old and new HTTP semantic conventions) that hold the raw path, the URL with
# its query string, or the client's address.
_RAW_PATH = ("http.target", "url.path")
_RAW_URL = ("http.url", "url.full")
_DROPPED = ("url.query", "net.peer.ip", "net.peer.port", "client.address", "client.port")


def _redact_request(span: Any, scope: dict[str, Any]) -> None:
    """Blank what the instrumentation took from the raw request (see the docstring); the
    route template stays in `http.route`, which the instrumentation sets once it is known."""
    if span is None or not span.is_recording():
        return
    for key in _RAW_PATH:
        span.set_attribute(key, "")
    for key in _RAW_URL:
        span.set_attribute(key, f"{scope.get('scheme', 'http')}://{_host(scope)}")
    for key in _DROPPED:
        span.set_attribute(key, "")


def _host(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return str(value.decode("latin-1"))
    return "unknown"
