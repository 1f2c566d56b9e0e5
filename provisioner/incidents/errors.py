"""Incident errors; `problems.py` maps each to its HTTP status."""

from __future__ import annotations

from typing import ClassVar

from provisioner.errors import FieldError, ProvisionerError


class IncidentNotFound(ProvisionerError):
    """No such incident, or the caller may not see it (the same answer, so ids leak nothing)."""

    code: ClassVar[str] = "incident-not-found"
    title: ClassVar[str] = "No such incident"

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id} does not exist or is not visible to you")
        self.incident_id = incident_id


class InvalidIncident(ProvisionerError):
    """Input the schema accepted but a report cannot carry (an attachment too large...)."""

    code: ClassVar[str] = "invalid-incident"
    title: ClassVar[str] = "The incident report is not valid"

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail, errors=(FieldError(field=field, reason=detail),))


class TransitionRefused(ProvisionerError):
    """The workflow only moves forward: new -> triaged -> resolved."""

    code: ClassVar[str] = "incident-transition-refused"
    title: ClassVar[str] = "The incident cannot move to that status"

    def __init__(self, incident_id: str, *, current: str, requested: str) -> None:
        super().__init__(f"incident {incident_id} is {current}; it cannot become {requested}")
        self.current = current
        self.requested = requested


class EvidenceTampered(ProvisionerError):
    """The stored evidence no longer matches its hash: never serve it as good."""

    code: ClassVar[str] = "evidence-tampered"
    title: ClassVar[str] = "The incident's evidence failed its integrity check"

    def __init__(self, incident_id: str, *, reason: str) -> None:
        super().__init__(
            f"incident {incident_id}: the stored evidence does not match its hash ({reason}); "
            "it has been changed since it was frozen and is withheld"
        )
        self.incident_id = incident_id
        self.reason = reason
