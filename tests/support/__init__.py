"""Builders and servers shared by tests of several kinds (unit, integration)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from provisioner.delivery.base import DeliveryContext, Method, Role
from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import JoinDetails, Person

# Test modules import helpers from tests.support.smtp and also load it as a plugin for
# its fixtures; registering it first lets pytest rewrite its asserts either way.
pytest.register_assert_rewrite("tests.support.smtp")

STRICT_SETTINGS = MeetingSettings(
    passcode_required=True,
    passcode_min_length=8,
    waiting_room=True,
    sign_in_required=True,
    sign_in_domains=("example.org",),
    join_before_host=False,
    presenters=Presenters.HOST_ONLY,
    chat=Chat.HOST_ONLY,
    mute_on_entry=True,
    per_invitee_links=True,
    invitee_domains=None,
    max_duration_minutes=120,
)


def make_delivery_context(**overrides: Any) -> DeliveryContext:
    """A delivery of a one-hour Berlin meeting to one invitee; override any field."""
    context = DeliveryContext(
        delivery_id="dlv_0001",
        meeting_id="mtg_0001",
        uid="mtg_0001@provisioner.example.org",
        sequence=0,
        method=Method.REQUEST,
        topic="Quarterly review",
        start=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
        end=datetime(2026, 12, 1, 14, 0, tzinfo=UTC),
        timezone="Europe/Berlin",
        provider="jitsi",
        organizer=Person(email="host@example.org", name="Hana Host"),
        recipient=Person(email="ivan@example.org", name="Ivan Invitee"),
        role=Role.INVITEE,
        join=JoinDetails(
            url="https://meet.example.org/room-7f3a?jwt=secret-token", passcode="831-552-09"
        ),
        personal=True,
        settings=STRICT_SETTINGS,
        not_enforced=frozenset({Control.WAITING_ROOM}),
    )
    return replace(context, **overrides)
