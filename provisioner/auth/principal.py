"""Who is calling, whatever way they signed in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MANAGER_CLAIM = "manager_email"
_ADDRESS = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: `subject` is the identity provider's stable `sub`."""

    subject: str
    email: str
    name: str
    groups: tuple[str, ...]
    scopes: frozenset[str]
    roles: frozenset[str] = frozenset()
    client_id: str | None = None  # set for a calendar integration (client-credentials token)
    # False only when the identity provider says so explicitly (many never send the claim):
    # an unverified address must not make its holder the owner of meetings made for it.
    email_verified: bool = True
    # The caller's manager, when the identity provider sends a `manager_email` claim; an
    # incident report tells them (else `[incidents] managers` in the settings is used).
    manager_email: str | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def is_integration(self) -> bool:
        """A machine client acting in its own name (RFC 9068: `sub` is the client id)."""
        return self.client_id is not None


def manager_from_claims(claims: Mapping[str, Any]) -> str | None:
    """The `manager_email` claim if it holds one plausible address, else None.

    A claim is data from the identity provider, not from the caller, but a malformed value
    must not become a mail recipient.
    """
    value = claims.get(MANAGER_CLAIM)
    if isinstance(value, str) and _ADDRESS.match(value.strip()):
        return value.strip().lower()
    return None
