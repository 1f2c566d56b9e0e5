"""Why an action link is refused. Each refusal is audited and shown as a plain page.

ActionRefused
├── ActionLinkInvalid      malformed, tampered with, or unknown            (404)
├── ActionLinkNotYours     signed in as someone other than the host        (403)
├── ActionLinkUsed         already used once                               (410)
├── ActionLinkExpired      past its expiry                                 (410)
└── ActionNotPossible      the meeting or provider cannot do it now        (409)
"""

from __future__ import annotations

from typing import ClassVar

from provisioner.errors import ProvisionerError


class ActionRefused(ProvisionerError):
    code: ClassVar[str] = "action-refused"
    title: ClassVar[str] = "This action link cannot be used"
    status: ClassVar[int] = 400
    reason: ClassVar[str] = "refused"


class ActionLinkInvalid(ActionRefused):
    code: ClassVar[str] = "action-link-invalid"
    status: ClassVar[int] = 404
    reason: ClassVar[str] = "invalid"


class ActionLinkNotYours(ActionRefused):
    code: ClassVar[str] = "action-link-not-yours"
    status: ClassVar[int] = 403
    reason: ClassVar[str] = "other-user"


class ActionLinkUsed(ActionRefused):
    code: ClassVar[str] = "action-link-used"
    status: ClassVar[int] = 410
    reason: ClassVar[str] = "used"


class ActionLinkExpired(ActionRefused):
    code: ClassVar[str] = "action-link-expired"
    status: ClassVar[int] = 410
    reason: ClassVar[str] = "expired"


class ActionNotPossible(ActionRefused):
    code: ClassVar[str] = "action-not-possible"
    status: ClassVar[int] = 409
    reason: ClassVar[str] = "not-possible"
