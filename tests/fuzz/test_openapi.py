"""Schemathesis against /openapi.json with a valid token: no 5xx, responses match the schema.

The number of examples is bounded so CI stays fast; the run is derandomized so a failure
reproduces. Every operation is exercised with the caller's real scopes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import BaseSchema, checks
from schemathesis.core.result import Ok

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.migrate import upgrade
from tests.conftest import make_settings
from tests.support.live import live_server


@pytest.fixture(scope="module")
def token() -> tuple[LocalIssuer, str]:
    issuer = LocalIssuer(issuer="https://idp.test.invalid")
    return issuer, issuer.token(
        subject="fuzz",
        email="fuzz@example.com",
        name="Fuzz",
        groups=["employees"],
        lifetime_seconds=3600,
    )


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, token: tuple[LocalIssuer, str]
) -> Iterator[BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}"
    upgrade(url)
    jitsi: dict[str, Any] = {
        "base_url": "https://meet.example.com",
        "app_id": "fuzz",
        "domain": "meet.example.com",
        "app_secret": "x" * 44,
    }
    # The write rate limit off (it is tested on its own): with it, most generated writes
    # would be answered 429 before they reached the code they are meant to exercise.
    api = {"max_invitees": 20, "write_rate_per_minute": 1_000_000, "write_burst": 1_000_000}
    app_settings = make_settings(tmp, url, token[0], jitsi, api=api)
    with live_server(app_settings) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        schema.config.update(base_url=base_url)
        yield schema


# What we promise: no 5xx, and every response (errors included) matches the schema.
# Not checked: "schema-valid data is accepted" -- the schema cannot express rules such as
# "start is in the future" or "the invitee's domain is allowed", which answer 422 by design.
GENERATION_MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_api_never_fails_and_matches_its_schema(
    api_schema: BaseSchema, token: tuple[LocalIssuer, str]
) -> None:
    # Driven through Hypothesis directly: schemathesis' pytest plugin does not run on the
    # pytest version here. Each operation gets its own bounded, derandomized run.
    headers = {"Authorization": f"Bearer {token[1]}"}
    results = list(api_schema.get_all_operations())
    invalid = [result for result in results if not isinstance(result, Ok)]
    assert invalid == [], "the OpenAPI document has operations schemathesis cannot read"
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 8

    for operation, mode in itertools.product(operations, GENERATION_MODES):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=25,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            exercise()
        except Unsatisfiable:
            # An operation without parameters or body (e.g. /healthz) has nothing to break.
            assert mode is schemathesis.GenerationMode.NEGATIVE
