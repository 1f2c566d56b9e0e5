"""When the provider fails or contradicts the policy, nothing half-made is left behind."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from provisioner.delivery.models import Delivery
from provisioner.meetings.models import Meeting
from provisioner.policy.document import load_policy, parse_policy
from provisioner.policy.model import Control
from provisioner.problems import PROVIDER_RETRY_AFTER_SECONDS
from provisioner.providers.errors import ProviderRetriable
from provisioner.state import AppState
from tests.factories import meeting_body
from tests.fakes.provider import FakeProvider

REPO_ROOT = Path(__file__).resolve().parents[3]


async def meeting_states(state: AppState) -> list[str]:
    async with state.db.session() as session:
        return list((await session.scalars(select(Meeting.state))).all())


async def deliveries(state: AppState) -> int:
    async with state.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Delivery)) or 0)


class TestProviderUnavailable:
    async def test_503_with_retry_after_then_the_retry_succeeds(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        fake = FakeProvider(
            create_failures=[ProviderRetriable("429", provider="fake", retry_after=7)]
        )
        state.providers = {"fake": fake}
        headers = host_headers | {"Idempotency-Key": "retry-me"}
        body = meeting_body(provider="fake")
        failed = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == "7"
        assert failed.json()["type"].endswith("/provider-unavailable")
        assert await meeting_states(state) == ["failed"]
        assert await deliveries(state) == 0
        retried = await client.post("/api/v1/meetings", json=body, headers=headers)
        assert retried.status_code == 201
        assert "idempotent-replayed" not in retried.headers
        assert sorted(await meeting_states(state)) == ["failed", "verified"]

    async def test_a_503_always_says_when_to_retry(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        """The provider gave no Retry-After (a 503 or a timeout): ours still gives one."""
        state.providers = {
            "fake": FakeProvider(create_failures=[ProviderRetriable("503", provider="fake")])
        }
        failed = await client.post(
            "/api/v1/meetings", json=meeting_body(provider="fake"), headers=host_headers
        )
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == str(PROVIDER_RETRY_AFTER_SECONDS)


class TestVerificationFailure:
    async def test_contradicted_control_deletes_the_meeting_and_answers_502(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        fake = FakeProvider(mismatch={Control.WAITING_ROOM: "waiting room off"})
        state.providers = {"fake": fake}
        response = await client.post(
            "/api/v1/meetings", json=meeting_body(provider="fake"), headers=host_headers
        )
        assert response.status_code == 502
        assert response.json()["type"].endswith("/verification-failed")
        assert fake.deleted == fake.created and len(fake.created) == 1
        assert await meeting_states(state) == ["failed"]
        assert await deliveries(state) == 0


class TestRequiredControlNotEnforceable:
    async def test_provider_lacking_a_required_control_is_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        text = (REPO_ROOT / "config" / "policy.yaml").read_text()
        assert load_policy(REPO_ROOT / "config" / "policy.yaml")
        state.policy = parse_policy(
            text.replace(
                "  waiting_room:\n    value: true\n    locked: true\n",
                "  waiting_room:\n    value: true\n    locked: true\n    enforcement: required\n",
            ),
            source="test",
        )
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        assert response.status_code == 422
        problem = response.json()
        assert problem["type"].endswith("/control-not-enforceable")
        assert problem["errors"] == [{"field": "provider", "reason": "cannot enforce waiting_room"}]
        assert await meeting_states(state) == []


class TestRequiredControlUnconfirmed:
    async def test_required_control_the_read_back_does_not_confirm_is_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], state: AppState
    ) -> None:
        """Enforcement that depends on account settings shows only after the call."""
        fake = FakeProvider(unconfirmed=frozenset({Control.SIGN_IN_REQUIRED}))
        state.providers = {"fake": fake}
        response = await client.post(
            "/api/v1/meetings", json=meeting_body(provider="fake"), headers=host_headers
        )
        assert response.status_code == 422
        assert response.json()["type"].endswith("/control-not-enforceable")
        assert fake.deleted == fake.created and len(fake.created) == 1
        assert await meeting_states(state) == ["failed"]
        assert await deliveries(state) == 0
