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

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
