"""`/docs`: Swagger UI for `/openapi.json`, served entirely from this service.

FastAPI's stock page loads Swagger UI from a CDN and starts it with an inline script. A
strict Content-Security-Policy forbids both, and an air-gapped deployment cannot reach the
CDN, so that page used to be exempt from the CSP and loaded third-party code into our
origin. Here the page, Swagger UI's bundle and stylesheet (the files the `fastapi-offline`
wheel carries; nothing else of that package is used) and a small start-up script
(`static/api_docs.js`) are all ours, and `/docs` has the same CSP as every other page.
ReDoc is not offered: it injects `<style>` elements, which that CSP refuses.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from provisioner.web.render import TEMPLATES

__all__ = ["SWAGGER_UI_DIR", "router"]

SWAGGER_UI_DIR = Path(str(files("fastapi_offline") / "static"))
# Only what the page loads: an allow-list, not the package's whole folder.
_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
_A_DAY = "public, max-age=86400"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, "api_docs.html", {"openapi_url": request.app.openapi_url}
    )


@router.get("/docs/assets/{name}")
async def api_docs_asset(name: str) -> FileResponse:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise StarletteHTTPException(status_code=404)
    return FileResponse(
        SWAGGER_UI_DIR / name, media_type=media_type, headers={"Cache-Control": _A_DAY}
    )
