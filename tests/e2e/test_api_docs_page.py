"""`/docs` in a real browser: Swagger UI renders the API from our own files, with the
page's strict CSP enforced and no request leaving 127.0.0.1 (the `page` fixture aborts and
reports any). A screenshot is saved under tests/artifacts/.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.e2e.test_browser import ARTIFACTS, page  # noqa: F401 (the Playwright page fixture)
from tests.support.oidc_server import READ_ONLY_ID, OidcServer

# Each Content-Security-Policy violation, as the page itself reports it.
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def test_swagger_ui_renders_the_operations_under_the_csp(page: Any, app_url: str) -> None:  # noqa: F811
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(WATCH_CSP)

    response = page.goto(f"{app_url}/docs")
    assert response is not None and response.status == 200
    assert "script-src 'self';" in response.headers["content-security-policy"]
    create = page.locator(".opblock-post", has_text="/api/v1/meetings").first
    create.wait_for(timeout=20_000)
    create.locator(".opblock-summary").first.click()
    # Expanded, the create shows its parameters: the Idempotency-Key header among them.
    page.get_by_text("Idempotency-Key", exact=True).first.wait_for(timeout=10_000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
    assert page.evaluate("window.__violations") == []
    assert [text for text in console if "Content Security Policy" in text] == []
    assert errors == []


def test_authorize_and_try_an_operation_with_a_real_token(
    page: Any,  # noqa: F811
    app_url: str,
    oidc: OidcServer,
) -> None:
    """An integrator's path: paste a token into Authorize, try `GET /api/v1/meetings`."""
    token = oidc.access_token(READ_ONLY_ID, scope="meetings:read")
    page.add_init_script(WATCH_CSP)
    page.goto(f"{app_url}/docs")
    page.locator("button.authorize").first.click()
    page.locator(".auth-container input").first.fill(token)
    page.locator(".auth-btn-wrapper button.authorize").first.click()
    page.locator(".auth-btn-wrapper button.btn-done").first.click()

    listing = page.locator(".opblock-get", has_text="/api/v1/meetings").first
    listing.locator(".opblock-summary").first.click()
    listing.locator("button.try-out__btn").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/meetings") as sent:
        listing.locator("button.execute").click()
    assert sent.value.status == 200
    assert sent.value.request.headers["authorization"] == f"Bearer {token}"
    status = listing.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=10_000)
    assert status.inner_text().strip() == "200"
    assert page.evaluate("window.__violations") == []
