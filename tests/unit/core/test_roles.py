"""What a browser session may do through the JSON API, by role."""

from __future__ import annotations

import pytest

from provisioner.auth.roles import Role, session_scopes


@pytest.mark.parametrize("role", list(Role))
def test_every_role_gets_the_scopes_its_routes_check(role: Role) -> None:
    # The routes' role checks decide which meetings and changes; without the scopes a
    # responder's session could not end a meeting through /api/v1, nor IT run the fix.
    assert session_scopes([role]) == {"meetings:read", "meetings:write"}


def test_no_role_no_scope() -> None:
    assert session_scopes([]) == frozenset()
    assert session_scopes(["not-a-role"]) == frozenset()
