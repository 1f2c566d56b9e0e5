"""Where a provider has no API for a control, the refusal tells the host what to do."""

from __future__ import annotations

import pytest

from provisioner.meetings.manual_steps import END_BY_HAND, EXPEL_BY_HAND, LOCK_BY_HAND, unsupported
from provisioner.providers.base import Feature
from tests.fakes.provider import FakeProvider

PROVIDERS = ("zoom", "teams", "google_meet", "webex", "jitsi")


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_provider_has_a_manual_step_for_both_controls(name: str) -> None:
    provider = FakeProvider(name=name, features=frozenset())
    expel = unsupported(provider, Feature.EXPEL)
    lock = unsupported(provider, Feature.LOCK)
    assert expel.detail == f"{name} has no API to remove a participant: {EXPEL_BY_HAND[name]}"
    assert lock.detail == f"{name} has no API to lock a meeting: {LOCK_BY_HAND[name]}"
    assert (expel.feature, lock.feature, expel.provider) == ("expel", "lock", name)
    end = unsupported(provider, Feature.END_FOR_ALL)
    assert end.detail == f"{name} has no API to end a meeting for everyone: {END_BY_HAND[name]}"


def test_an_unknown_provider_still_gets_a_plain_instruction() -> None:
    refusal = unsupported(FakeProvider(name="acme", features=frozenset()), Feature.EXPEL)
    assert refusal.detail == (
        "acme has no API to remove a participant: do it in the meeting window as the host"
    )
