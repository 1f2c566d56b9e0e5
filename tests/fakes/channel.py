"""A channel that records what it was asked to send and can be told to fail."""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioner.delivery.alerts import DeadLetterAlert
from provisioner.delivery.base import (
    ChannelError,
    DeliveryContext,
    DeliveryReceipt,
)


@dataclass
class FakeChannel:
    name: str = "email"
    sent: list[DeliveryContext] = field(default_factory=list)
    failures: list[ChannelError] = field(default_factory=list)
    attempts: int = 0
    alerts: list[DeadLetterAlert] = field(default_factory=list)

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(context)
        return DeliveryReceipt(channel=self.name, message_id=f"<fake-{len(self.sent)}@test>")

    async def send_alert(self, alert: DeadLetterAlert) -> DeliveryReceipt:
        self.alerts.append(alert)
        return DeliveryReceipt(channel=self.name, message_id=f"<alert-{len(self.alerts)}@test>")

    async def aclose(self) -> None:
        return None
