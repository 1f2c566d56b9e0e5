"""Shared plumbing for provider simulators, so every simulator is held to the official spec.

A simulator is a small ASGI app that stores what it is sent and returns it. Three things
here keep it honest and useful, whatever the provider:

- `SpecValidator` checks one request, or one response, against the provider's own OpenAPI
  document with openapi-core. `SpecValidationMiddleware` wraps a simulator app so that
  *every* request and response is checked: a violation becomes HTTP 500 carrying the
  violation text, and is also appended to a list the test can assert is empty -- a client
  that drifts from the spec, or a simulator that answers something the real API never
  would, fails loudly instead of passing by accident.
- `Fault` and `answer_with_fault` let a simulator misbehave the way a real provider does
  (answer 500 after doing the work, hang after doing it, throttle, be unavailable), which
  is what idempotent-create tests need.
- `TimeoutASGITransport` enforces the client's read timeout, which `httpx.ASGITransport`
  ignores (timeouts live in the socket layer it bypasses), so "hang" faults time out as
  they would on a network.

The spec is normalised in memory, never on disk, in ways that do not change what a
request or response may contain (see `_normalise`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug.datastructures import Headers, ImmutableMultiDict

MAX_MESSAGE_CHARS = 400


class SpecViolation(Exception):
    """A request or response that the provider's OpenAPI document does not allow."""

    def __init__(self, where: str, violations: Sequence[str]) -> None:
        self.where = where
        self.violations = list(violations)
        super().__init__(f"{where} violates the spec: " + "; ".join(self.violations))


def _walk(node: Any, visit: Callable[[dict[str, Any]], None]) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def _normalise(document: dict[str, Any], *, base_path: str, one_of_as_any_of: bool) -> None:
    """Adapt the document for in-process validation without loosening any schema.

    - `servers` becomes `base_path`: simulators answer on any host, and Prism-style
      clients send paths at the root.
    - `security` is dropped: openapi-core cannot check OAuth2 schemes (it warns and passes);
      each simulator checks its own bearer tokens, as the provider's gateway would.
    - A response whose `content` is `{}` (Webex's 204s) means "no body"; openapi-core
      would otherwise demand one.
    - Optionally `oneOf` becomes `anyOf`, for documents whose `oneOf` branches overlap so
      that no value can match exactly one (Zoom's user-settings response); this is the
      same repair the README describes for `meetings.prism.json`'s parameters.
    """
    document["servers"] = [{"url": base_path or "/"}]

    def visit(node: dict[str, Any]) -> None:
        node.pop("security", None)
        responses = node.get("responses")
        if isinstance(responses, dict):
            for response in responses.values():
                if isinstance(response, dict) and response.get("content") == {}:
                    del response["content"]
        if one_of_as_any_of and "oneOf" in node and isinstance(node["oneOf"], list):
            node["anyOf"] = node.pop("oneOf")

    _walk(document, visit)


def _json_media_types(document: dict[str, Any]) -> set[str]:
    """Media types that carry JSON but that openapi-core would read as opaque bytes."""
    found: set[str] = set()

    def visit(node: dict[str, Any]) -> None:
        content = node.get("content")
        if isinstance(content, dict):
            for media_type in content:
                base = media_type.split(";", 1)[0].strip().lower()
                if base != "application/json" and base.endswith(("+json", "/json")):
                    found.add(media_type)

    _walk(document, visit)
    return found


@functools.lru_cache(maxsize=8)
def _load_openapi(spec_path: str, base_path: str, one_of_as_any_of: bool) -> OpenAPI:
    """Parse and normalise a spec once per process; Zoom's is 2.7 MB."""
    document = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    _normalise(document, base_path=base_path, one_of_as_any_of=one_of_as_any_of)
    deserializers: dict[str, Callable[[bytes], Any]] = {
        media_type: json.loads for media_type in _json_media_types(document)
    }
    # None skips validating the (large, vendor-written) spec itself; the stubs of some
    # openapi-spec-validator versions do not admit None, so it goes through Any.
    no_spec_check: Any = None
    config = Config(spec_validator_cls=no_spec_check, extra_media_type_deserializers=deserializers)
    return OpenAPI.from_dict(document, config=config)


def _describe(error: BaseException) -> list[str]:
    """Short, readable violation lines (openapi-core's own text can quote whole schemas)."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for schema_error in getattr(current, "schema_errors", ()) or ():
            where = "/".join(str(part) for part in getattr(schema_error, "absolute_path", ()))
            message = str(getattr(schema_error, "message", schema_error))
            found.append(f"{where or '<body>'}: {message[:MAX_MESSAGE_CHARS]}")
        current = current.__cause__ or current.__context__
    if not found:
        found.append(f"{type(error).__name__}: {str(error)[:MAX_MESSAGE_CHARS]}")
    return found


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence openapi-core's note that a vendor spec uses the deprecated `allowEmptyValue`
    (Zoom's does): it is about the document, not about the traffic being checked."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Use of allowEmptyValue", category=DeprecationWarning
        )
        yield


@dataclass
class _OpenAPIRequest:
    """openapi-core's request protocol over a Starlette request and its buffered body."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _OpenAPIResponse:
    status_code: int
    data: bytes | None
    headers: Headers
    content_type: str


class SpecValidator:
    """Validate requests and responses against one provider's official OpenAPI document.

    Args:
        spec_path: the JSON document (e.g. `../shared/specs/zoom/meetings.prism.json`).
        base_path: the path prefix the simulator serves under ("" = the root, like Prism).
        one_of_as_any_of: repair overlapping `oneOf` branches (see `_normalise`).
    """

    def __init__(
        self, spec_path: Path, *, base_path: str = "", one_of_as_any_of: bool = False
    ) -> None:
        self._openapi = _load_openapi(str(spec_path), base_path, one_of_as_any_of)

    @staticmethod
    def _request(request: Request, body: bytes) -> _OpenAPIRequest:
        query = ImmutableMultiDict(list(request.query_params.multi_items()))
        parameters = RequestParameters(
            query=query,
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(list(request.cookies.items())),
        )
        return _OpenAPIRequest(
            host_url=str(request.base_url).rstrip("/"),
            path=request.url.path,
            method=request.method.lower(),
            parameters=parameters,
            body=body or None,
            content_type=request.headers.get("content-type", ""),
        )

    def validate_request(self, request: Request, body: bytes) -> None:
        """Raises: SpecViolation naming each problem (parameters, body, unknown path)."""
        try:
            with _quiet():
                self._openapi.validate_request(self._request(request, body))
        except OpenAPIError as error:
            raise SpecViolation(
                f"request {request.method} {request.url.path}", _describe(error)
            ) from error

    def validate_response(
        self,
        request: Request,
        body: bytes,
        *,
        status_code: int,
        headers: Mapping[str, str],
        data: bytes,
    ) -> None:
        """Raises: SpecViolation when the status, media type or body is not in the spec."""
        response = _OpenAPIResponse(
            status_code=status_code,
            data=data or None,
            headers=Headers(list(headers.items())),
            content_type=headers.get("content-type", ""),
        )
        try:
            with _quiet():
                self._openapi.validate_response(self._request(request, body), response)
        except OpenAPIError as error:
            raise SpecViolation(
                f"response {status_code} to {request.method} {request.url.path}",
                _describe(error),
            ) from error


@dataclass
class CapturedResponse:
    """An ASGI response held back so it can be validated (or replaced) before sending."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header_map(self) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.headers}

    async def send_to(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def call_buffered(app: ASGIApp, scope: Scope, body: bytes) -> CapturedResponse:
    """Run `app` on an already-read body and capture its whole response."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            await asyncio.Event().wait()  # like a client that keeps the connection open
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    captured = CapturedResponse(status=500, headers=[], body=b"")
    parts: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            captured.status = message["status"]
            captured.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    captured.body = b"".join(parts)
    return captured


def json_response(
    status: int,
    payload: object,
    *,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> CapturedResponse:
    raw = [(b"content-type", content_type.encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return CapturedResponse(status=status, headers=raw, body=json.dumps(payload).encode())


class SpecValidationMiddleware:
    """Validate every request before, and every response after, the wrapped app runs.

    A violation is answered with 500 and `{"simulator": "spec violation", ...}` and is
    appended to `violations`, so a test can also assert that none happened.
    """

    def __init__(
        self, app: ASGIApp, validator: SpecValidator, *, violations: list[str] | None = None
    ) -> None:
        self.app = app
        self.validator = validator
        self.violations: list[str] = violations if violations is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        captured = await self.handle(scope, body)
        await captured.send_to(send)

    async def handle(self, scope: Scope, body: bytes) -> CapturedResponse:
        """Validate, run, validate: the building block a simulator's gateway calls."""
        request = Request(scope)
        try:
            self.validator.validate_request(request, body)
        except SpecViolation as violation:
            return self._refuse(violation)
        captured = await call_buffered(self.app, scope, body)
        try:
            self.validator.validate_response(
                request,
                body,
                status_code=captured.status,
                headers=captured.header_map(),
                data=captured.body,
            )
        except SpecViolation as violation:
            return self._refuse(violation)
        return captured

    def _refuse(self, violation: SpecViolation) -> CapturedResponse:
        self.violations.append(str(violation))
        return json_response(
            500,
            {
                "simulator": "spec violation",
                "where": violation.where,
                "violations": violation.violations,
            },
        )


class FaultKind(StrEnum):
    """How a provider can fail one call; "after commit" means the work was done."""

    ERROR_AFTER_COMMIT = "error_after_commit"  # 500 although the meeting now exists
    HANG_AFTER_COMMIT = "hang_after_commit"  # no answer within the client's timeout
    THROTTLE = "throttle"  # 429 with Retry-After; nothing done
    UNAVAILABLE = "unavailable"  # 503 before doing anything


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    retry_after: str | None = "0"


@dataclass
class FaultQueue:
    """Faults for one operation, consumed one per call, in order."""

    pending: list[Fault] = field(default_factory=list)
    served: list[FaultKind] = field(default_factory=list)

    def push(self, *faults: Fault | FaultKind) -> None:
        self.pending.extend(f if isinstance(f, Fault) else Fault(f) for f in faults)

    def pop(self) -> Fault | None:
        if not self.pending:
            return None
        fault = self.pending.pop(0)
        self.served.append(fault.kind)
        return fault


async def answer_with_fault(
    fault: Fault,
    commit: Callable[[], Any],
    *,
    error_body: object,
    content_type: str = "application/json",
    hang_seconds: float = 30.0,
) -> CapturedResponse:
    """Misbehave as `fault` says; `commit` does the real work (awaited if it is async).

    Faults are answered at the gateway, outside spec validation, because real gateways
    send 429/5xx for operations whose spec never lists them.
    """
    if fault.kind in (FaultKind.ERROR_AFTER_COMMIT, FaultKind.HANG_AFTER_COMMIT):
        result = commit()
        if asyncio.iscoroutine(result):
            await result
        if fault.kind is FaultKind.HANG_AFTER_COMMIT:
            await asyncio.sleep(hang_seconds)  # the client's timeout should fire first
        return json_response(500, error_body, content_type=content_type)
    if fault.kind is FaultKind.THROTTLE:
        headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
        return json_response(429, error_body, content_type=content_type, headers=headers)
    return json_response(503, error_body, content_type=content_type)


class TimeoutASGITransport(httpx.AsyncBaseTransport):
    """`httpx.ASGITransport` that honours the request's read timeout like a socket would.

    The timeout raises `httpx.ReadTimeout`, and the simulator's handler is cancelled
    mid-way -- after any "commit" it already did, which is the point of a hang fault.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            return await asyncio.wait_for(self._inner.handle_async_request(request), timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("simulated read timeout", request=request) from None

    async def aclose(self) -> None:
        await self._inner.aclose()
