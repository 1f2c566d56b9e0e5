"""`briefing_acknowledgement: required`: no meeting before the host acknowledged the
provider's briefing; the refusal says what to do and where, and creates nothing."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.audit.models import AuditEvent
from provisioner.auth.principal import Principal
from provisioner.briefing.service import acknowledge_briefing, list_acknowledgements
from provisioner.meetings.models import Meeting
from provisioner.policy.document import BriefingAcknowledgementMode, parse_policy
from provisioner.policy.errors import InvalidPolicy
from provisioner.state import AppState
from tests.conftest import REPO_ROOT
from tests.factories import meeting_body

POLICY = (REPO_ROOT / "config" / "policy.yaml").read_text()
DANA = Principal(
    subject="dana",
    email="dana@example.com",
    name="Dana Host",
    groups=("employees",),
    scopes=frozenset(),
)


def require_acknowledgement(state: AppState) -> None:
    state.policy = parse_policy(POLICY + "\nbriefing_acknowledgement: required\n", source="t")


class TestPolicyOption:
    def test_off_by_default_and_required_when_set(self) -> None:
        assert parse_policy(POLICY, source="t").briefing_acknowledgement is (
            BriefingAcknowledgementMode.OFF
        )
        required = parse_policy(POLICY + "\nbriefing_acknowledgement: required\n", source="t")
        assert required.briefing_acknowledgement is BriefingAcknowledgementMode.REQUIRED

    def test_a_bare_yaml_off_reads_as_off(self) -> None:
        document = parse_policy(POLICY + "\nbriefing_acknowledgement: off\n", source="t")
        assert document.briefing_acknowledgement is BriefingAcknowledgementMode.OFF

    def test_an_unknown_value_is_refused_naming_the_key(self) -> None:
        with pytest.raises(InvalidPolicy) as caught:
            parse_policy(POLICY + "\nbriefing_acknowledgement: sometimes\n", source="t")
        assert [e.field for e in caught.value.errors] == ["briefing_acknowledgement"]


class TestApiRefusal:
    async def test_refused_with_where_to_go_and_nothing_created(
        self, client: httpx.AsyncClient, state: AppState, host_headers: dict[str, str]
    ) -> None:
        require_acknowledgement(state)
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)

        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/briefing-not-acknowledged")
        assert problem["errors"][0]["field"] == "provider"
        assert f"{state.settings.api.public_url}/briefings/jitsi" in problem["detail"]
        async with state.db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Meeting)) == 0

    async def test_allowed_once_acknowledged_and_audited(
        self, client: httpx.AsyncClient, state: AppState, host_headers: dict[str, str]
    ) -> None:
        require_acknowledgement(state)
        async with state.db.session() as session:
            await acknowledge_briefing(session, host=DANA, provider="jitsi")
            await acknowledge_briefing(session, host=DANA, provider="jitsi")  # idempotent
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)

        assert response.status_code == 201, response.text
        async with state.db.session() as session:
            rows = await list_acknowledgements(session)
            events = await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "briefing.acknowledged")
            )
        assert [(r.email, r.provider) for r in rows] == [("dana@example.com", "jitsi")]
        assert events == 1

    async def test_an_unverified_address_does_not_acknowledge_for_its_owner(
        self, client: httpx.AsyncClient, state: AppState, host_headers: dict[str, str]
    ) -> None:
        # Mallory's identity provider says "dana@example.com" but not that it was verified.
        mallory = replace(DANA, subject="mallory", email_verified=False)
        require_acknowledgement(state)
        async with state.db.session() as session:
            await acknowledge_briefing(session, host=mallory, provider="jitsi")

        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)

        assert response.status_code == 403, response.text  # Dana has not read it herself
        async with state.db.session() as session:
            rows = await list_acknowledgements(session)
        assert [(r.subject, r.email) for r in rows] == [("mallory", "")]

    async def test_not_checked_when_the_policy_is_off(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        assert response.status_code == 201
