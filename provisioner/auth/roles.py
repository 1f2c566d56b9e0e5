"""The three roles and what a signed-in browser may do with each.

Roles come from the groups claim through `[roles]` in the settings (deny by default: a
group that is not listed grants nothing). A browser session has no OAuth scopes of its own,
so it is given the scopes its roles imply; that keeps `require_scope` meaning the same for
a bearer token and a session.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    EMPLOYEE = "employee"
    IT_ADMIN = "it-admin"
    RESPONDER = "responder"


SCOPES_BY_ROLE: dict[str, tuple[str, ...]] = {
    Role.EMPLOYEE: ("meetings:read", "meetings:write"),
}


def session_scopes(roles: Iterable[str]) -> frozenset[str]:
    return frozenset(scope for role in roles for scope in SCOPES_BY_ROLE.get(role, ()))
