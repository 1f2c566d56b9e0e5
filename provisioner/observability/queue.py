"""The delivery queue's depth: one indexed count, shared by `/metrics` and `/readyz`."""

from __future__ import annotations

from sqlalchemy import func, select

from provisioner.db import Database
from provisioner.delivery.models import Delivery, DeliveryStatus


async def queue_depth(db: Database) -> int:
    """Deliveries not yet settled: pending (due or backing off) plus sending (claimed)."""
    async with db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.SENDING)))
        )
    return int(count or 0)
