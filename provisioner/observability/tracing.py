"""Optional OpenTelemetry tracing: a span per request, exported over OTLP/HTTP.

Off unless `observability.otlp_endpoint` is set, and then only if the `otel` extra is
installed (`pip install 'provisioner[otel]'`: opentelemetry-sdk,
opentelemetry-instrumentation-fastapi, opentelemetry-exporter-otlp-proto-http). Without
either it does nothing, so tracing is never a hard dependency. The packages are imported
by name at run time, which keeps them out of the type checker's and the installer's way.
Spans carry route templates and status codes; probes and `/metrics` are not traced.
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
        app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS
    )
    log.info("tracing.enabled", service_name=settings.service_name)
    return provider
