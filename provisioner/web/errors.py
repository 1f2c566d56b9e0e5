"""Refusals on HTML pages: the same 401/403 classes as the API, rendered for a browser.

Subclasses keep the API's meaning (and its problem `type` for anyone who asks for JSON),
while `web.install` renders them as a sign-in redirect or an HTML page.
"""

from __future__ import annotations

from typing import ClassVar

from provisioner.auth.errors import AuthenticationFailed, PermissionDenied


class SignInRequired(AuthenticationFailed):
    """No (current) browser session: send the browser to sign in, then back to `next`."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in to continue")
        self.next_path = next_path


class PageForbidden(PermissionDenied):
    """Signed in, but the role (or the CSRF token, or the redirect target) is wrong."""

    code: ClassVar[str] = "permission-denied"
