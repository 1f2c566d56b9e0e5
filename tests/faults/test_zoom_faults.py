"""Zoom failing on create and on registrant add: 500s, 429s and timeouts.

Each fault goes through the whole app (API, service, idempotency, the real database), the
stateful Zoom simulator and a real SMTP relay; the worker then delivers, and the shared
check asserts: one live Zoom meeting per request, nothing undelivered, no orphan after
reconciliation, no secret in the logs.
"""

from __future__ import annotations

import asyncio

import pytest

from provisioner.providers.zoom import ZoomConfig
from tests.contract.providers.zoom.test_simulator import posts
from tests.faults.api import INVITEES, RECIPIENTS
from tests.faults.conftest import Rig
from tests.faults.harness import Early, until
from tests.integration.meetings.test_db_faults import assert_problem
from tests.simulators.validation import Fault, FaultKind

# Zoom calls per API request: a fault pushed this often fails the request.
ATTEMPTS: int = ZoomConfig.model_fields["max_attempts"].default


class TestZoom500OnCreate:
    async def test_500_after_zoom_created_it_is_adopted_and_the_retry_replays(
        self, rig: Rig
    ) -> None:
        """Zoom made the meeting but answered 500. Creating again would leave two meetings
        with the same invitees (two sets of links, one never ended); the client's own
        retry must get the first answer back, not a third meeting."""
        rig.sim.create_faults.push(FaultKind.ERROR_AFTER_COMMIT)
        first, retried = await rig.create_twice("evt-500-after")
        assert first.status_code == 201, first.text
        assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true"
        assert retried.json()["id"] == first.json()["id"]
        assert posts(rig.sim, "/meetings") == 1  # found by its marker, not made again
        found = await rig.settle(log_events=["provider.write_adopted"])
        assert (found.sent, found.waiting, found.resent) == (RECIPIENTS, 0, 0)

    async def test_500_on_every_attempt_is_a_502_problem_and_the_retry_makes_one(
        self, rig: Rig
    ) -> None:
        """Zoom failed before acting, on every attempt: the client must get a
        problem document naming the provider (never a bare 500) and, retrying with the
        same key, exactly one meeting."""
        rig.sim.early_creates.extend([Early.ERROR] * ATTEMPTS)
        failed, retried = await rig.create_twice("evt-500-before")
        assert_problem(failed, 502, "provider-error")
        assert retried.status_code == 201, retried.text
        assert "idempotent-replayed" not in retried.headers  # the failure was not replayed
        assert posts(rig.sim, "/meetings") == ATTEMPTS + 1
        found = await rig.settle(
            log_events=["provider.write_outcome_unknown", "meeting.provision_failed"]
        )
        assert found.sent == RECIPIENTS


class TestZoom500OnRegistrantAdd:
    async def test_500_after_the_registrant_was_added_is_adopted(self, rig: Rig) -> None:
        """Zoom registered the invitee but answered 500: registering again would give
        that invitee a second personal link (the check finds duplicates)."""
        rig.sim.registrant_faults.push(FaultKind.ERROR_AFTER_COMMIT)
        await rig.made("evt-registrant-500-after")
        assert posts(rig.sim, "/registrants") == INVITEES
        [registrants] = rig.sim.registrants.values()
        assert len(registrants) == INVITEES
        await rig.settle(log_events=["provider.write_adopted"])

    async def test_500_on_every_attempt_deletes_the_meeting_and_the_retry_makes_one(
        self, rig: Rig
    ) -> None:
        """The meeting exists at Zoom when its registrants cannot be added. Nobody was
        told its id, so it must be deleted there and then (else a live meeting nobody
        owns); the client gets a 502 problem and its retry makes exactly one."""
        rig.sim.early_registrants.extend([Early.ERROR] * ATTEMPTS)
        failed, retried = await rig.create_twice("evt-registrant-500")
        assert_problem(failed, 502, "provider-error")
        assert len(rig.sim.deleted) == 1  # the half-made meeting, at once
        assert retried.status_code == 201, retried.text
        assert posts(rig.sim, "/meetings") == 2
        found = await rig.settle(log_events=["meeting.provision_failed"])
        assert found.reconciled == 0  # nothing was left for reconciliation
        assert found.sent == RECIPIENTS

    async def test_when_the_clean_up_fails_too_reconciliation_removes_the_orphan(
        self, rig: Rig
    ) -> None:
        """The outage that fails the registrant adds also fails every DELETE of the
        half-made meeting (a single 500 is retried: deleting is repeat-safe). That meeting
        carries our marker, has working links and belongs to nobody: if cleaning up at
        once fails, reconciliation must finish it."""
        rig.sim.early_registrants.extend([Early.ERROR] * ATTEMPTS)
        rig.sim.early_deletes.extend([Early.ERROR] * ATTEMPTS)
        failed, retried = await rig.create_twice("evt-cleanup-fails")
        assert_problem(failed, 502, "provider-error")
        assert retried.status_code == 201, retried.text
        await rig.settle(log_events=["zoom.orphan_cleanup_failed"])

    async def test_503_on_every_attempt_is_a_503_problem_with_retry_after(self, rig: Rig) -> None:
        """Zoom unavailable while registering: a 503 problem (retriable, unlike the 502
        of a bare 500); the half-made meeting is deleted; the retry makes one."""
        rig.sim.registrant_faults.push(*[Fault(FaultKind.UNAVAILABLE)] * ATTEMPTS)
        failed, retried = await rig.create_twice("evt-registrant-503")
        assert_problem(failed, 503, "provider-unavailable")
        assert rig.sim.deleted and retried.status_code == 201, retried.text
        await rig.settle(log_events=["meeting.provision_failed"])


class TestZoom429:
    async def test_retry_after_is_honoured_and_one_meeting_is_made(self, rig: Rig) -> None:
        """Zoom throttles the create once: we wait what Retry-After says (the provider's
        recorded sleep), look for the meeting, and create it once."""
        rig.sim.create_faults.push(Fault(FaultKind.THROTTLE, retry_after="3"))
        await rig.made("evt-429-once")
        assert rig.zoom.sleeps == [3.0]
        assert rig.sim.create_faults.served == [FaultKind.THROTTLE]
        assert posts(rig.sim, "/meetings") == 2  # the throttled one did nothing
        await rig.settle(log_events=["provider.write_outcome_unknown"])

    async def test_throttled_throughout_is_a_503_with_zooms_retry_after(self, rig: Rig) -> None:
        """Still throttled after every attempt: the client is told to come back when
        Zoom said (Retry-After passed on), and its retry makes one meeting."""
        rig.sim.create_faults.push(*[Fault(FaultKind.THROTTLE, retry_after="7")] * ATTEMPTS)
        failed, retried = await rig.create_twice("evt-429-always")
        assert_problem(failed, 503, "provider-unavailable")
        assert failed.headers["retry-after"] == "7"
        assert rig.zoom.sleeps == [7.0] * ATTEMPTS
        assert retried.status_code == 201, retried.text
        await rig.settle(log_events=["meeting.provision_failed"])


class TestZoomTimeouts:
    @pytest.mark.parametrize(
        "hang", ["answer lost (Zoom created it)", "request lost (Zoom did nothing)"]
    )
    async def test_a_create_that_timed_out_leaves_one_meeting(self, hang: str, rig: Rig) -> None:
        """After a timeout we cannot know whether Zoom created the meeting. Either way
        the user must end with one meeting: adopted if it exists, made if it does not."""
        if hang.startswith("answer"):
            rig.sim.create_faults.push(FaultKind.HANG_AFTER_COMMIT)
        else:
            rig.sim.early_creates.append(Early.HANG)
        await rig.made("evt-timeout")
        found = await rig.settle(log_events=["provider.write_outcome_unknown"])
        assert found.sent == RECIPIENTS

    async def test_timeouts_throughout_are_a_503_and_reconciliation_finds_nothing(
        self, rig: Rig
    ) -> None:
        """Every attempt timed out (lost on the way): the client gets a 503 problem; its
        retry makes one meeting; reconciliation then has no orphan to find."""
        rig.sim.early_creates.extend([Early.HANG] * ATTEMPTS)
        failed, retried = await rig.create_twice("evt-timeout-always")
        assert_problem(failed, 503, "provider-unavailable")
        assert retried.status_code == 201, retried.text
        found = await rig.settle(log_events=["meeting.provision_failed"])
        assert found.reconciled == 0

    async def test_the_clients_retry_during_a_hung_create_waits_for_the_first(
        self, rig: Rig
    ) -> None:
        """The caller times out on us while Zoom hangs, and retries with the same key
        while the first request is still working: the retry must wait for it (or get a
        409), never start a second Zoom meeting."""
        rig.sim.create_faults.push(FaultKind.HANG_AFTER_COMMIT)
        rig.sim.registrant_faults.push(FaultKind.HANG_AFTER_COMMIT)
        first = asyncio.create_task(rig.create("evt-hung"))
        await until(lambda: bool(rig.sim.meetings))  # the first is at Zoom, hanging
        retried = await rig.create("evt-hung")
        response = await first
        assert response.status_code == 201, response.text
        assert retried.status_code == 201, retried.text
        assert retried.json()["id"] == response.json()["id"]
        assert posts(rig.sim, "/meetings") == 1
        await rig.settle(log_events=["provider.write_adopted"])
