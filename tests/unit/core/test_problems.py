"""Problem rendering: one status table, field paths in the API's own notation."""

from __future__ import annotations

from provisioner.auth.errors import AuthenticationFailed
from provisioner.idempotency.errors import IdempotencyKeyInFlight, IdempotencyKeyReused
from provisioner.meetings.errors import InvalidRequest, MeetingNotFound
from provisioner.problems import _field_path, status_for
from provisioner.providers.errors import ProviderRejected, ProviderRetriable


class TestStatusFor:
    def test_each_error_maps_to_its_status(self) -> None:
        assert status_for(AuthenticationFailed("x")) == 401
        assert status_for(MeetingNotFound("m")) == 404
        assert status_for(IdempotencyKeyInFlight("x")) == 409
        assert status_for(IdempotencyKeyReused("x")) == 422
        assert status_for(InvalidRequest("x")) == 422
        assert status_for(ProviderRejected("x", provider="p")) == 422
        assert status_for(ProviderRetriable("x", provider="p")) == 503


class TestFieldPath:
    def test_locations_become_api_paths(self) -> None:
        assert _field_path(("body", "invitees", 2, "email")) == "invitees[2].email"
        assert _field_path(("body", "settings", "chat")) == "settings.chat"
        assert _field_path(("header", "Idempotency-Key")) == "Idempotency-Key"
        assert _field_path(("body",)) == "body"
