"""Helpers for the in-meeting control tests (the shared fixtures and helpers are in
`tests.support.meeting_fixtures`)."""

from __future__ import annotations

from provisioner.providers.base import Feature
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider


def zoom_like(state: AppState) -> FakeProvider:
    """A provider named zoom without the expel/lock API (as Zoom's REST API is)."""
    provider = FakeProvider(
        name="zoom", features=frozenset(Feature) - {Feature.EXPEL, Feature.LOCK}
    )
    state.providers = {"zoom": provider}
    return provider
