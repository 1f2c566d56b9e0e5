"""Errors the policy domain raises.

    ProvisionerError
    ├── InvalidPolicy      the policy file is unreadable YAML or breaks the schema
    └── PolicyViolation    a request loosens a locked setting or invites a barred domain

Both carry one `FieldError` per problem so the problem document (and the CLI) can name
every bad key or request field at once instead of one per round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from provisioner.errors import FieldError, ProvisionerError
from provisioner.policy.model import Control


class InvalidPolicy(ProvisionerError):
    """The policy document cannot be trusted, so nothing is resolved from it."""

    code: ClassVar[str] = "invalid-policy"
    title: ClassVar[str] = "The meeting policy is invalid"

    def __init__(self, *, source: str, errors: Sequence[FieldError]) -> None:
        problems = "\n".join(f"  {error.field}: {error.reason}" for error in errors)
        super().__init__(f"policy {source} is invalid:\n{problems}", errors=tuple(errors))
        self.source = source


@dataclass(frozen=True)
class Violation:
    """One request field that the effective policy refuses.

    `requested` and `allowed` are display strings of policy values (booleans, enum values,
    domains, minutes); the policy holds no secrets, so they are safe to return and log.
    """

    field: str
    control: Control
    requested: str
    allowed: str
    reason: str


class PolicyViolation(ProvisionerError):
    """The request asks for something the policy forbids; nothing was created."""

    code: ClassVar[str] = "policy-violation"
    title: ClassVar[str] = "The request loosens a locked policy setting"

    def __init__(self, violations: Sequence[Violation]) -> None:
        fields = ", ".join(violation.field for violation in violations)
        super().__init__(
            f"{len(violations)} request field(s) break the meeting policy: {fields}",
            errors=tuple(FieldError(v.field, v.reason) for v in violations),
        )
        self.violations = tuple(violations)
