"""The invariant check itself: it must fail on each violation it claims to catch.

A check that always passes would make every fault test green for nothing, so each
violation is planted here on top of a healthy run and the check must name it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import update

from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.providers.zoom.mapping import marker
from tests.faults.conftest import Rig
from tests.faults.invariants import FaultWorld

Plant = Callable[[FaultWorld, str], Awaitable[str]]  # returns extra log text


async def orphan(world: FaultWorld, meeting_id: str) -> str:
    world.zoom.add_meeting("dana@example.com", agenda=marker("a-request-we-forgot"))
    return ""


async def duplicate(world: FaultWorld, meeting_id: str) -> str:
    world.zoom.add_meeting("dana@example.com", agenda=marker(meeting_id))
    return ""


async def dead_for_a_transient_fault(world: FaultWorld, meeting_id: str) -> str:
    async with world.db.session() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.role == "invitee")
            .values(status=DeliveryStatus.DEAD, last_error="ChannelRetriable: relay down")
        )
    return ""


async def marked_sent_never_received(world: FaultWorld, meeting_id: str) -> str:
    world.relay.messages.pop()
    return ""


async def passcode_logged(world: FaultWorld, meeting_id: str) -> str:
    [stored] = world.zoom.meetings.values()
    return f'{{"event": "oops", "detail": "{stored["password"]}"}}\n'


async def registrant_link_logged(world: FaultWorld, meeting_id: str) -> str:
    [registrants] = world.zoom.registrants.values()
    link = str(registrants[0]["join_url"])
    return link.replace(link.split("tk=")[1], "[redacted]") + " " + link.split("tk=")[1]


@pytest.mark.parametrize(
    ("plant", "named"),
    [
        (orphan, "nobody owns"),
        (duplicate, "several Zoom meetings"),
        (dead_for_a_transient_fault, "deliveries lost"),
        (marked_sent_never_received, "deliveries lost"),
        (passcode_logged, r"secrets in the logs: \['issued by Zoom', 'stored passcode'\]"),
        (registrant_link_logged, "secrets in the logs"),
    ],
)
async def test_the_check_names_a_planted_violation(plant: Plant, named: str, rig: Rig) -> None:
    """Each invariant has teeth: the same healthy run passes, the planted fault fails."""
    response = await rig.made("evt-healthy")
    await rig.settle()
    extra = await plant(rig.world, response.json()["id"])
    with pytest.raises(AssertionError, match=named) as failed:
        await rig.check(extra_logs=extra)
    if extra:  # the failure names the kind of secret, never the secret itself
        assert extra.strip().split()[-1].strip('"}') not in str(failed.value)
