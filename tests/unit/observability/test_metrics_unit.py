"""Metrics helpers: safe label values, provider error counting, optional tracing."""

from __future__ import annotations

import sys
import types
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from provisioner.middleware import route_template
from provisioner.observability import tracing
from provisioner.observability.audit_export import parse_hostport, rfc5424
from provisioner.observability.metrics import Metrics, bound, current, label
from provisioner.providers.errors import ProviderRejected
from provisioner.providers.http import ProviderHttp
from provisioner.settings import ObservabilitySettings


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class TestLabels:
    @pytest.mark.parametrize(
        "raw", ["ana@example.com", "https://meet.example.com/x?jwt=abc", "a b\nc"]
    )
    def test_no_address_url_or_whitespace_survives(self, raw: str) -> None:
        cleaned = label(raw)
        assert "@" not in cleaned and "/" not in cleaned and " " not in cleaned

    def test_names_and_codes_pass_unchanged(self) -> None:
        assert label("teams_chat") == "teams_chat"
        assert label("policy-violation") == "policy-violation"
        assert label("") == "none"

    def test_route_template_or_unmatched(self) -> None:
        class Route:
            path = "/api/v1/meetings/{meeting_id}"

        assert route_template({"route": Route()}) == "/api/v1/meetings/{meeting_id}"
        assert route_template({}) == "unmatched"

    def test_unknown_methods_collapse(self) -> None:
        metrics = Metrics()
        metrics.observe_request("BREW", "/x", 405, 0.01)
        assert (
            sample(
                metrics,
                "provisioner_http_requests_total",
                method="other",
                route="/x",
                status="405",
            )
            == 1
        )


class TestProviderErrors:
    async def test_a_failed_call_is_counted_by_provider_and_class(self) -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(400))
        http = ProviderHttp("zoom", base_url="https://api.test", transport=transport)
        metrics = Metrics()
        try:
            with bound(metrics), pytest.raises(ProviderRejected):
                await http.request("POST", "/meetings?token=secret", json={})
            assert current() is None
            # Unbound (the CLI, other apps): nothing is counted, nothing breaks.
            with pytest.raises(ProviderRejected):
                await http.request("POST", "/meetings", json={})
        finally:
            await http.aclose()
        assert (
            sample(
                metrics,
                "provisioner_provider_errors_total",
                provider="zoom",
                error_class="ProviderRejected",
            )
            == 1
        )


class TestSyslogFormat:
    def test_header_fields(self) -> None:
        record = {"occurred_at": "2030-01-01T00:00:00.000000+00:00", "action": "meeting.created"}
        line = rfc5424(record, hostname="host one", procid=42).decode()
        assert line.startswith(
            "<134>1 2030-01-01T00:00:00.000000+00:00 hostone provisioner 42 meeting.created - {"
        )

    @pytest.mark.parametrize(
        ("text", "parsed"),
        [("127.0.0.1:514", ("127.0.0.1", 514)), ("[::1]:5514", ("::1", 5514))],
    )
    def test_host_port(self, text: str, parsed: tuple[str, int]) -> None:
        assert parse_hostport(text) == parsed

    @pytest.mark.parametrize("text", ["nohost", ":514", "h:0", "h:port"])
    def test_bad_host_port(self, text: str) -> None:
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_hostport(text)


class TestTracing:
    def test_off_without_an_endpoint(self) -> None:
        assert tracing.install_tracing(FastAPI(), ObservabilitySettings()) is None

    def test_off_when_the_packages_are_missing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def missing(name: str) -> Any:
            raise ImportError(name=name)

        monkeypatch.setattr("importlib.import_module", missing)
        settings = ObservabilitySettings(otlp_endpoint="http://127.0.0.1:4318/v1/traces")
        assert tracing.install_tracing(FastAPI(), settings) is None

    def test_wires_provider_exporter_and_instrumentor(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: dict[str, Any] = {}

        class Provider:
            def __init__(self, resource: Any) -> None:
                calls["resource"] = resource

            def add_span_processor(self, processor: Any) -> None:
                calls["processor"] = processor

        class Instrumentor:
            @staticmethod
            def instrument_app(app: FastAPI, **kwargs: Any) -> None:
                calls["instrumented"] = kwargs

        fakes: dict[str, dict[str, Any]] = {
            "opentelemetry.sdk.resources": {
                "Resource": types.SimpleNamespace(create=lambda attrs: attrs)
            },
            "opentelemetry.sdk.trace": {"TracerProvider": Provider},
            "opentelemetry.sdk.trace.export": {"BatchSpanProcessor": lambda e: ("batch", e)},
            "opentelemetry.exporter.otlp.proto.http.trace_exporter": {
                "OTLPSpanExporter": lambda endpoint: ("otlp", endpoint)
            },
            "opentelemetry.instrumentation.fastapi": {"FastAPIInstrumentor": Instrumentor},
        }
        for name, attrs in fakes.items():
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            monkeypatch.setitem(sys.modules, name, module)
        endpoint = "http://127.0.0.1:4318/v1/traces"
        provider = tracing.install_tracing(
            FastAPI(), ObservabilitySettings(otlp_endpoint=endpoint, service_name="prov-test")
        )
        assert isinstance(provider, Provider)
        assert calls["resource"] == {"service.name": "prov-test"}
        assert calls["processor"] == ("batch", ("otlp", endpoint))
        assert calls["instrumented"]["excluded_urls"] == "healthz,readyz,metrics"
