"""Who is calling, whatever way they signed in."""

from __future__ import annotations

from dataclasses import dataclass


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

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def is_integration(self) -> bool:
        """A machine client acting in its own name (RFC 9068: `sub` is the client id)."""
        return self.client_id is not None
