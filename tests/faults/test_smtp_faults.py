"""The mail relay refusing, then gone, while the worker delivers Zoom invitations.

The relay is a real aiosmtpd server (STARTTLS and AUTH required); the worker is the
service's own, on the suite's database. A temporary refusal must leave the delivery
pending, a permanent one must be a visible dead letter (with an alert), and a relay that
dies mid-batch must lose nothing once it is back: at-least-once means at most the message
in flight arrives twice.
"""

from __future__ import annotations

import asyncio

from provisioner.settings import Settings
from tests.faults.api import BODY, RECIPIENTS
from tests.faults.conftest import Rig
from tests.faults.harness import FaultyRelay, bring_back, until
from tests.support.smtp import SmtpServer, TlsFiles

REFUSED = "chen@partner.example.org"
EVERYONE = [BODY["invitees"][i]["email"] for i in range(len(BODY["invitees"]))] + [
    "dana@example.com"
]


def faulty(relay: SmtpServer) -> FaultyRelay:
    assert isinstance(relay.handler, FaultyRelay)
    return relay.handler


class TestRelayRefusingThenDown:
    async def test_nothing_is_lost_and_only_the_message_in_flight_repeats(
        self, rig: Rig, relay: SmtpServer, tls_files: TlsFiles
    ) -> None:
        """Invitations are the product: a relay saying "try later", refusing one
        mailbox for good, or dying under the worker must never leave an invitee without
        their link and without anyone knowing."""
        handler = faulty(relay)
        await rig.made("evt-first")

        # 1. "451 try later" for everyone: each delivery stays pending.
        handler.rcpt_by_address = dict.fromkeys(EVERYONE, "451 4.3.0 mailbox busy, try later")
        first = await rig.worker.run_once()
        assert (first.claimed, first.sent, first.retried) == (RECIPIENTS, 0, RECIPIENTS)
        found = await rig.check()
        assert (found.sent, found.waiting) == (0, RECIPIENTS)

        # 2. One mailbox now refuses for good, the others accept.
        handler.rcpt_by_address = {REFUSED: "550 5.1.1 no such user"}
        found = await rig.settle(refused=[REFUSED])
        assert (found.sent, found.waiting, found.refused) == (RECIPIENTS - 1, 0, 1)
        alerts = len(handler.messages) - found.sent  # the host is told whom we missed
        assert alerts == 1

        # 3. A second meeting (the partner has fixed the mailbox); the relay dies while
        # holding the second message of the batch.
        handler.rcpt_by_address = {}
        await rig.made("evt-second")
        handler.hold_at = len(handler.messages) + 1
        batch = asyncio.create_task(rig.worker.run_once())
        try:
            await until(handler.holding.is_set)
            relay.controller.stop()  # the relay goes down mid-batch
        finally:
            handler.release.set()
        during = await batch
        assert (during.claimed, during.sent, during.retried) == (RECIPIENTS, 1, RECIPIENTS - 1)
        found = await rig.check(meetings=2, refused=[REFUSED])
        assert (found.sent, found.waiting) == (RECIPIENTS, RECIPIENTS - 1)

        # 4. The relay is back where it was: everything goes out.
        bring_back(relay, tls_files)
        found = await rig.settle(
            meetings=2,
            refused=[REFUSED],
            log_events=["delivery.retry_scheduled", "delivery.dead_lettered", "delivery.sent"],
        )
        assert (found.sent, found.waiting, found.refused) == (2 * RECIPIENTS - 1, 0, 1)
        # The relay had accepted the held message when it died; we never heard its 250.
        assert found.resent == 1


class TestRelayDownLongerThanTheRetrySchedule:
    async def test_invitations_survive_an_outage_longer_than_the_retry_schedule(
        self, rig: Rig, relay: SmtpServer, tls_files: TlsFiles, settings: Settings
    ) -> None:
        """A relay down for maintenance longer than the retry schedule (with the default
        worker settings the six attempts span at most 155 s) is still a transient fault:
        once it is back the invitations must go out, not stay dead."""
        await rig.made("evt-outage")
        relay.controller.stop()
        try:
            for _ in range(settings.worker.max_attempts):
                await rig.worker.run_once()
        finally:
            bring_back(relay, tls_files)
        await rig.settle()
