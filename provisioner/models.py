"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from provisioner.audit.models import AuditEvent
from provisioner.db import Base
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.meetings.models import Invitee, Meeting, MeetingState

__all__ = [
    "AuditEvent",
    "Base",
    "Delivery",
    "DeliveryStatus",
    "IdempotencyKey",
    "Invitee",
    "KeyState",
    "Meeting",
    "MeetingState",
]
