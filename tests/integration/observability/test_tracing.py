"""Tracing exports spans named and labelled by route template (`http.route`): no path that is a
credential (the emergency links' `/actions/{token}`), no query string (the sign-in
callback's `code`), no client address reaches the collector."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import provisioner.app as app_module
from provisioner.app import create_app
from provisioner.observability import tracing
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.support.meeting_fixtures import SettingsFactory

TOKEN = "pal." + "ab" * 16 + "." + "S" * 43  # the shape of an emergency action link
CODE = "SECRET-AUTH-CODE-123"


@pytest.fixture
def settings(settings_with: SettingsFactory) -> Settings:
    # Loopback, and never reached: the exporter is replaced by an in-memory one below.
    return settings_with(observability={"otlp_endpoint": "http://127.0.0.1:9/v1/traces"})


async def test_spans_carry_route_templates_and_no_secret(
    settings: Settings, state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(trace_exporter, "OTLPSpanExporter", lambda **_: exporter)
    providers: list[Any] = []
    real_install = tracing.install_tracing

    def install(app: FastAPI, observability: Any) -> Any:
        providers.append(real_install(app, observability))
        return providers[-1]

    monkeypatch.setattr(app_module, "install_tracing", install)
    app = create_app(settings, state=state, run_worker=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://provisioner.test") as http:
        await http.get(f"/actions/{TOKEN}")
        await http.get("/auth/callback", params={"code": CODE, "state": "STATE-XYZ"})
        await http.get("/no/such/page", params={"token": CODE})
    (provider,) = providers
    provider.force_flush()
    spans = exporter.get_finished_spans()
    provider.shutdown()

    attributes = {
        (span.name, k, str(v)) for span in spans for k, v in (span.attributes or {}).items()
    }
    assert spans and attributes
    leaked = [item for item in attributes if TOKEN in item[2] or CODE in item[2]]
    assert leaked == []
    assert {v for _, k, v in attributes if k in ("http.target", "url.path")} == {""}
    assert {v for _, k, v in attributes if k == "http.route"} == {
        "/actions/{token}",
        "/auth/callback",
    }
    assert {v for _, k, v in attributes if k == "http.url"} == {"http://provisioner.test"}
    assert all(v == "" for _, k, v in attributes if k in ("net.peer.ip", "client.address"))
