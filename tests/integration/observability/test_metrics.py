"""`/metrics`: who may read it, and that requests, provisioning, refusals, replays and
deliveries show up in it -- with no address or URL ever used as a label value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provisioner.app import build_state, close_state, create_app
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.conftest import make_settings
from tests.factories import meeting_body

METRICS_TOKEN = "scrape-token-0123456789abcdef"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def admin_headers(issuer: LocalIssuer) -> dict[str, str]:
    token = issuer.token(
        subject="ivan", email="ivan@example.com", name="Ivan Admin", groups=["it-admins"]
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token_settings(
    tmp_path: Path, database_url: str, issuer: LocalIssuer, jitsi_config: dict[str, Any]
) -> Settings:
    return make_settings(
        tmp_path,
        database_url,
        issuer,
        jitsi_config,
        observability={"metrics_token": METRICS_TOKEN},
    )


@pytest.fixture
async def token_client(token_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    token_state = build_state(token_settings)
    app = create_app(token_settings, state=token_state, run_worker=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
        ) as http:
            yield http
    finally:
        await close_state(token_state)


async def scrape(client: httpx.AsyncClient, headers: dict[str, str]) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


class TestAccess:
    async def test_anonymous_is_refused_by_default(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")
        assert response.status_code == 401
        assert "provisioner_http_requests" not in response.text

    async def test_an_employee_is_forbidden(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        assert (await client.get("/metrics", headers=host_headers)).status_code == 403

    async def test_an_it_admin_bearer_may_scrape(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        samples = await scrape(client, admin_headers)
        assert value(samples, "provisioner_delivery_queue_depth") == 0

    async def test_the_static_token_may_scrape_and_a_wrong_one_may_not(
        self, token_client: httpx.AsyncClient
    ) -> None:
        await scrape(token_client, {"Authorization": f"Bearer {METRICS_TOKEN}"})
        wrong = await token_client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (await token_client.get("/metrics")).status_code == 401

    async def test_public_when_configured(
        self,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
    ) -> None:
        settings = make_settings(
            tmp_path, database_url, issuer, jitsi_config, observability={"metrics_public": True}
        )
        public_state = build_state(settings)
        app = create_app(settings, state=public_state, run_worker=False)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
            ) as http:
                assert (await http.get("/metrics")).status_code == 200
        finally:
            await close_state(public_state)

    async def test_not_in_the_api_document(self, client: httpx.AsyncClient) -> None:
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


class TestCounting:
    async def test_provisioning_replay_refusal_and_delivery_are_counted(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        admin_headers: dict[str, str],
        state: AppState,
    ) -> None:
        headers = host_headers | {"Idempotency-Key": "metrics-1"}
        body = meeting_body()
        created = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert created.status_code == 201, created.text
        replay = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert replay.headers.get("Idempotent-Replayed") == "true"
        meeting_id = created.json()["id"]
        assert (
            await client.get(f"/api/v1/meetings/{meeting_id}", headers=host_headers)
        ).status_code == 200
        refused = await client.post(
            "/api/v1/meetings",
            json=meeting_body(settings={"waiting_room": False}),
            headers=host_headers,
        )
        assert refused.status_code == 422

        before_drain = await scrape(client, admin_headers)
        # host + three invitees waiting in the outbox
        assert value(before_drain, "provisioner_delivery_queue_depth") == 4

        sent = await state.worker.drain()
        assert sent == 4
        samples = await scrape(client, admin_headers)

        assert (
            value(
                samples,
                "provisioner_provisioning_duration_seconds_count",
                provider="jitsi",
                outcome="created",
            )
            == 1
        )
        assert (
            value(
                samples,
                "provisioner_provisioning_duration_seconds_count",
                provider="jitsi",
                outcome="refused",
            )
            == 1
        )
        assert value(samples, "provisioner_idempotency_replays_total") == 1
        assert value(samples, "provisioner_policy_refusals_total", reason="policy-violation") == 1
        assert (
            value(
                samples,
                "provisioner_http_requests_total",
                method="POST",
                route="/api/v1/meetings",
                status="201",
            )
            == 2  # the first and its replay
        )
        # The route template, never the path with the meeting's id in it.
        assert (
            value(
                samples,
                "provisioner_http_requests_total",
                method="GET",
                route="/api/v1/meetings/{meeting_id}",
            )
            == 1
        )
        assert (
            value(
                samples,
                "provisioner_http_request_duration_seconds_count",
                route="/api/v1/meetings",
            )
            == 3
        )
        assert value(samples, "provisioner_delivery_outcomes_total", channel="email") == 4
        assert (
            value(samples, "provisioner_delivery_outcomes_total", channel="email", outcome="sent")
            == 4
        )
        assert value(samples, "provisioner_delivery_queue_depth") == 0

        label_values = {v for (_, labels) in samples for _, v in labels}
        assert all("@" not in v and "http" not in v for v in label_values), label_values
        assert meeting_id not in str(label_values)

    async def test_unmatched_paths_share_one_label(
        self, client: httpx.AsyncClient, admin_headers: dict[str, str]
    ) -> None:
        assert (await client.get("/no/such/place/123")).status_code == 404
        samples = await scrape(client, admin_headers)
        assert value(samples, "provisioner_http_requests_total", route="unmatched") == 1
        assert not any("/no/such" in v for (_, labels) in samples for _, v in labels)

    async def test_apps_do_not_share_a_registry(
        self, settings: Settings, state: AppState, admin_headers: dict[str, str]
    ) -> None:
        first = create_app(settings, state=state, run_worker=False)
        second = create_app(settings, state=state, run_worker=False)
        assert first.state.metrics.registry is not second.state.metrics.registry


class TestReadiness:
    async def test_readyz_reports_the_queue(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["queue"] == "ok"
        assert ready.json()["queue_depth"] == 4
