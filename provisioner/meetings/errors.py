"""Meeting errors."""

from __future__ import annotations

from typing import ClassVar

from provisioner.errors import ProvisionerError


class InvalidRequest(ProvisionerError):
    """Input the schema accepted but the service cannot (a start in the past, duplicates)."""

    code: ClassVar[str] = "invalid-request"
    title: ClassVar[str] = "The request is not valid"


class MeetingNotFound(ProvisionerError):
    code: ClassVar[str] = "meeting-not-found"
    title: ClassVar[str] = "No such meeting"

    def __init__(self, meeting_id: str) -> None:
        super().__init__(f"meeting {meeting_id} does not exist or is not yours")
        self.meeting_id = meeting_id


class ControlNotEnforceable(ProvisionerError):
    """The policy requires a control the chosen provider cannot enforce."""

    code: ClassVar[str] = "control-not-enforceable"
    title: ClassVar[str] = "The chosen provider cannot enforce a required control"


class VerificationFailed(ProvisionerError):
    """The provider's read-back contradicted a control we asked it to enforce."""

    code: ClassVar[str] = "verification-failed"
    title: ClassVar[str] = "The provider did not apply the required settings"

    def __init__(self, detail: str, *, meeting_id: str) -> None:
        super().__init__(detail)
        self.meeting_id = meeting_id


class MeetingNotChangeable(ProvisionerError):
    """The meeting's state does not allow this change (cancelled, ended, failed...)."""

    code: ClassVar[str] = "meeting-not-changeable"
    title: ClassVar[str] = "The meeting can no longer be changed"

    def __init__(self, meeting_id: str, *, state: str) -> None:
        super().__init__(f"meeting {meeting_id} is {state}")
        self.meeting_id = meeting_id
        self.state = state
