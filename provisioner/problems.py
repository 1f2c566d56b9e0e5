"""Every error the API returns is an RFC 9457 problem document, rendered here and only here.

The table below is the single place where an error class meets an HTTP status. Anything
unexpected becomes a 500 problem carrying the request id and nothing else, so a stack
trace, a passcode or a join link can never reach a response body.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.errors import FieldError, ProvisionerError
from provisioner.idempotency.errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyLost,
    IdempotencyKeyReused,
)
from provisioner.incidents.errors import (
    EvidenceTampered,
    IncidentNotFound,
    InvalidIncident,
    TransitionRefused,
)
from provisioner.meetings.errors import (
    ControlNotEnforceable,
    InvalidRequest,
    MeetingNotChangeable,
    MeetingNotFound,
    VerificationFailed,
)
from provisioner.policy.errors import InvalidPolicy, PolicyViolation
from provisioner.providers.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderRetriable,
    ProviderUnknown,
    ProviderUnsupported,
)
from provisioner.ratelimit import RateLimited
from provisioner.redaction import scrub_text

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://provisioner.dev/problems/"

# Most specific class first: the first match wins.
STATUS_BY_ERROR: tuple[tuple[type[ProvisionerError], int], ...] = (
    (AuthenticationFailed, 401),
    (PermissionDenied, 403),
    (MeetingNotFound, 404),
    (IncidentNotFound, 404),
    (TransitionRefused, 409),
    (InvalidIncident, 422),
    (EvidenceTampered, 500),  # stored data was changed behind our back: an integrity alarm
    (IdempotencyKeyInFlight, 409),
    (IdempotencyKeyLost, 409),
    (RateLimited, 429),
    (MeetingNotChangeable, 409),
    (IdempotencyKeyReused, 422),
    (PolicyViolation, 422),
    (InvalidPolicy, 409),  # the caller's groups combine into a policy nobody can meet
    (InvalidRequest, 422),
    (ControlNotEnforceable, 422),
    (VerificationFailed, 502),
    (ProviderUnknown, 422),
    (ProviderUnsupported, 422),
    (ProviderRejected, 422),
    (ProviderNotFound, 502),
    (ProviderAuthFailed, 502),
    (ProviderRetriable, 503),
    (ProviderError, 502),
)


def status_for(error: ProvisionerError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: tuple[FieldError, ...] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": scrub_text(title),
        "status": status,
        "detail": scrub_text(detail),
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = [{"field": e.field, "reason": scrub_text(e.reason)} for e in errors]
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(location: tuple[Any, ...]) -> str:
    """('body', 'invitees', 2, 'email') -> 'invitees[2].email'."""
    path = ""
    for part in (
        location[1:]
        if location and location[0] in ("body", "query", "path", "header")
        else location
    ):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


# What a 503 from an unavailable provider tells the client to wait when the provider gave
# no Retry-After of its own: about what our own retries had already waited.
PROVIDER_RETRY_AFTER_SECONDS = 5


async def _on_provisioner_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProvisionerError)  # noqa: S101 (registered for this class)
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, ProviderRetriable):
        # Every 503 says when to come back: the provider's own hint, else ours.
        wait = PROVIDER_RETRY_AFTER_SECONDS if exc.retry_after is None else exc.retry_after
        headers["Retry-After"] = str(max(1, round(wait)))
    if isinstance(exc, AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="provisioner"'
    return problem(
        request,
        status=status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=headers or None,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = tuple(
        FieldError(field=_field_path(tuple(item.get("loc", ()))), reason=str(item.get("msg")))
        for item in exc.errors()
    )
    return problem(
        request,
        status=422,
        code="invalid-request",
        title="The request is not valid",
        detail=f"{len(errors)} field(s) are invalid: " + ", ".join(e.field for e in errors),
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot even decode (not UTF-8, not JSON at all).
        # For the client this is bad input like any other: the same 422 problem shape.
        return problem(
            request,
            status=422,
            code="invalid-request",
            title="The request is not valid",
            detail="the request body could not be parsed as JSON",
            errors=(FieldError("body", "not valid UTF-8 JSON"),),
        )
    codes = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}
    return problem(
        request,
        status=exc.status_code,
        code=codes.get(exc.status_code, "http-error"),
        title=str(exc.detail),
        detail=str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("request.failed", error_type=type(exc).__name__)
    return problem(
        request,
        status=500,
        code="internal-error",
        title="Internal error",
        detail="An unexpected error occurred; quote the request id to support.",
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    """A lost database connection (restart, failover, a killed backend) is the service
    being briefly unavailable, not a bug: 503 with Retry-After, so clients retry with the
    same Idempotency-Key (the failed attempt was rolled back and its key released). The
    pool has already discarded the dead connection. It is logged by type only: the error's
    text carries the statement and its (encrypted) parameters. Any other database error
    stays an unexpected one."""
    if not isinstance(exc, DBAPIError) or not exc.connection_invalidated:
        raise exc  # on to the catch-all: a 500, and the server logs the traceback
    log.warning("request.database_unavailable", error_type=type(exc.orig).__name__)
    return problem(
        request,
        status=503,
        code="database-unavailable",
        title="Database unavailable",
        detail="The connection to the database was lost; retry shortly.",
        headers={"Retry-After": "1"},
    )


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(ProvisionerError, _on_provisioner_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


def responses(*errors: type[ProvisionerError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route, listing the problems it can return."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        status = next((s for cls, s in STATUS_BY_ERROR if issubclass(error, cls)), 500)
        out[status] = {
            "description": error.title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out
