"""The reporter's manager: from the sign-in's claim when there is one, else from the config."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from provisioner.auth.bearer import principal_from_claims
from provisioner.auth.principal import manager_from_claims
from provisioner.incidents.notify import manager_of
from provisioner.settings import IncidentsSettings, Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Boss@Example.com", "boss@example.com"),
        ("  boss@example.com ", "boss@example.com"),
        ("not an address", None),
        ("a@b@c", None),
        ("boss@example.com\r\nBcc: x@evil.test", None),
        (["boss@example.com"], None),
        (None, None),
    ],
)
def test_only_one_plausible_address_is_taken(value: object, expected: str | None) -> None:
    assert manager_from_claims({"manager_email": value}) == expected


def test_the_claim_wins_over_the_configured_map() -> None:
    incidents = IncidentsSettings(managers={"ana@example.com": "mapped@example.com"})
    settings = cast(Settings, SimpleNamespace(incidents=incidents))
    claimed = principal_from_claims(
        {"sub": "u1", "email": "ana@example.com", "manager_email": "boss@example.com"},
        groups_claim="groups",
        roles={},
        scopes=(),
    )
    unclaimed = principal_from_claims(
        {"sub": "u1", "email": "ana@example.com"}, groups_claim="groups", roles={}, scopes=()
    )
    assert manager_of(claimed, settings) == "boss@example.com"
    assert manager_of(unclaimed, settings) == "mapped@example.com"
