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


# Every role reads and changes meetings within what the role allows (the role checks on
# each route decide which meetings and which changes); a session without these scopes
# could not use the JSON API its own pages' role grants: a responder could not end a
# meeting through /api/v1, nor IT run the scan's fix.
SCOPES_BY_ROLE: dict[str, tuple[str, ...]] = {
    Role.EMPLOYEE: ("meetings:read", "meetings:write"),
    Role.IT_ADMIN: ("meetings:read", "meetings:write"),
    Role.RESPONDER: ("meetings:read", "meetings:write"),
}


def session_scopes(roles: Iterable[str]) -> frozenset[str]:
    return frozenset(scope for role in roles for scope in SCOPES_BY_ROLE.get(role, ()))
