"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from provisioner.actions.models import ActionLink
from provisioner.audit.models import AuditEvent
from provisioner.auth.models import BrowserSession
from provisioner.briefing.models import BriefingAcknowledgement
from provisioner.db import Base
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.incidents.models import (
    Incident,
    IncidentAttachment,
    IncidentNote,
    IncidentStatus,
)
from provisioner.meetings.models import Invitee, Meeting, MeetingState

__all__ = [
    "ActionLink",
    "AuditEvent",
    "Base",
    "BriefingAcknowledgement",
    "BrowserSession",
    "Delivery",
    "DeliveryStatus",
    "IdempotencyKey",
    "Incident",
    "IncidentAttachment",
    "IncidentNote",
    "IncidentStatus",
    "Invitee",
    "KeyState",
    "Meeting",
    "MeetingState",
]
