"""ASGI middleware: request ids bound into every log line, and a cap on body size."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.problems import PROBLEM_JSON, TYPE_BASE

log = structlog.get_logger(__name__)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/meetings/{meeting_id}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Bind `request_id`, `method` and `path` for the request's log lines; echo the id;
    end with one `http.request.completed` line (our access log).

    uvicorn's own access log is off (`provisioner serve`): it prints the client's address
    and the full URL, query string included, where a token could travel. Ours names the
    route template, the status and the time taken, with the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client sees if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=scope["method"], path=scope["path"]
        )
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "http.request.completed",
                route=route_template(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id", "method", "path", "principal_id")


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413 before they are read into memory.

    `larger` names the few routes (method, path) that carry files and get their own
    limit, so that one screenshot does not need every route to accept megabytes.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        larger: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get((scope["method"], scope["path"]), self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, send, limit)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(scope, send, limit)

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "type": TYPE_BASE + "request-too-large",
                "title": "Request body too large",
                "status": 413,
                "detail": f"the body exceeds {limit} bytes",
                "instance": scope["path"],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parser re-raises it as a 413, not a 400."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large")


class SecurityHeadersMiddleware:
    """Headers every response carries: no sniffing, no referrer, no framing, a strict CSP.

    The pages need nothing but our own scripts and styles (no inline script, no CDN), so
    the CSP can be strict -- `/docs` included, whose Swagger UI is served from here too
    (web/api_docs.py). A response that sets its own CSP (the self-contained incident
    export) keeps it instead of this one. HSTS is sent when the service is published over
    https.
    """

    def __init__(
        self, app: ASGIApp, *, hsts_seconds: int = 0, form_targets: tuple[str, ...] = ()
    ) -> None:
        """`form_targets`: other origins a form may lead to -- the identity provider, since
        signing out posts to us and is redirected there (browsers apply form-action to
        that redirect too)."""
        self.app = app
        self.hsts = f"max-age={hsts_seconds}; includeSubDomains".encode() if hsts_seconds else b""
        sources = " ".join(("'self'", *form_targets))
        self.csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"object-src 'none'; base-uri 'none'; form-action {sources}; frame-ancestors 'none'"
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                # A response with a policy of its own keeps it alone: a second header would
                # be enforced too, and browsers apply the stricter of the two (the incident
                # export's inline styles would be blocked).
                own = any(name.lower() == b"content-security-policy" for name, _ in headers)
                if not own:
                    headers.append((b"content-security-policy", self.csp))
                if self.hsts:
                    headers.append((b"strict-transport-security", self.hsts))
            await send(message)

        await self.app(scope, receive, send_with_headers)
