"""`/docs` is served from our own files, under the same strict CSP as every other page.

The browser side (Swagger UI renders the operations with no CSP violation and no request
leaving 127.0.0.1) is in tests/e2e/test_api_docs_page.py.
"""

from __future__ import annotations

import re

import httpx

from provisioner.web.api_docs import SWAGGER_UI_DIR


class TestDocsPage:
    async def test_the_page_loads_only_our_scripts_under_the_strict_csp(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/docs")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "style-src 'self';" in csp
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", response.text, re.S)
        assert [attributes.strip() for attributes, _ in scripts] == [
            'src="/docs/assets/swagger-ui-bundle.js"',
            'src="/static/api_docs.js"',
        ]
        assert all(body.strip() == "" for _, body in scripts)  # no inline script
        assert 'data-openapi-url="/openapi.json"' in response.text
        # Every script and stylesheet from this origin: nothing from a CDN.
        urls = re.findall(r'(?:src|href)="([^"]*)"', response.text)
        assert len(urls) == 3
        assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls

    async def test_redoc_and_the_oauth2_redirect_page_are_gone(
        self, client: httpx.AsyncClient
    ) -> None:
        for path in ("/redoc", "/docs/oauth2-redirect"):
            assert (await client.get(path)).status_code == 404


class TestDocsAssets:
    async def test_the_bundle_and_the_stylesheet_are_served_with_their_types(
        self, client: httpx.AsyncClient
    ) -> None:
        bundle = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert bundle.content == (SWAGGER_UI_DIR / "swagger-ui-bundle.js").read_bytes()
        assert "max-age=86400" in bundle.headers["cache-control"]
        css = await client.get("/docs/assets/swagger-ui.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        starter = await client.get("/static/api_docs.js")
        assert starter.status_code == 200 and b"SwaggerUIBundle(" in starter.content

    async def test_anything_else_from_the_package_or_beyond_it_is_404(
        self, client: httpx.AsyncClient
    ) -> None:
        for name in ("redoc.standalone.js", "favicon.png", "..%2F__init__.py", "%2Fetc%2Fpasswd"):
            response = await client.get(f"/docs/assets/{name}")
            assert response.status_code == 404, name
            assert response.headers["content-type"].startswith("application/problem+json")


class TestDocumentedAuthentication:
    async def test_every_operation_but_the_probes_declares_the_bearer_scheme(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()
        scheme = document["components"]["securitySchemes"]["bearer"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        unsecured: set[tuple[str, str]] = set()
        secured: set[tuple[str, str]] = set()
        for path, item in document["paths"].items():
            for method, operation in item.items():
                target = secured if operation.get("security") == [{"bearer": []}] else unsecured
                target.add((method.upper(), path))
                if target is secured:
                    assert "401" in operation["responses"], (method, path)
        assert unsecured == {("GET", "/healthz"), ("GET", "/readyz")}
        assert ("POST", "/api/v1/meetings") in secured
        # What the document says is what the API does: no token, no answer.
        for method, path in sorted(secured):
            response = await client.request(method, path.replace("{", "").replace("}", ""))
            assert response.status_code == 401, (method, path, response.status_code)
