"""HTTP for meetings: thin handlers over `meetings.service`."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse

from provisioner.auth.deps import (
    CurrentPrincipal,
    SessionDep,
    StateDep,
    WriteRateLimit,
    authorized,
    require_role,
    require_scope,
)
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.principal import Principal
from provisioner.auth.roles import Role
from provisioner.errors import FieldError
from provisioner.idempotency.errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyLost,
    IdempotencyKeyReused,
)
from provisioner.idempotency.service import request_fingerprint
from provisioner.meetings.access import get_meeting_for_actor, is_host
from provisioner.meetings.attendance import AttendanceReport, check_attendance
from provisioner.meetings.controls import (
    ControlOutcome,
    ParticipantNotFound,
    expel_participant,
    lock_meeting,
)
from provisioner.meetings.errors import (
    ControlNotEnforceable,
    InvalidRequest,
    MeetingNotChangeable,
    MeetingNotFound,
    VerificationFailed,
)
from provisioner.meetings.lifecycle import cancel_meeting, end_meeting, reschedule_meeting
from provisioner.meetings.on_behalf import provision_for
from provisioner.meetings.read import meeting_read
from provisioner.meetings.repository import (
    delivery_status_by_invitee,
    get_meeting_for_host,
    list_meetings_for_host,
)
from provisioner.meetings.rotate import (
    RotateRequest,
    RotationIncomplete,
    RotationInProgress,
    rotate_meeting,
)
from provisioner.meetings.schemas import (
    MeetingCreate,
    MeetingList,
    MeetingRead,
    MeetingSummary,
    MeetingUpdate,
)
from provisioner.policy.errors import PolicyViolation
from provisioner.problems import responses
from provisioner.providers.base import MeetingProvider
from provisioner.providers.errors import (
    ProviderRetriable,
    ProviderUnknown,
    ProviderUnsupported,
)
from provisioner.providers.registry import pick
from provisioner.ratelimit import RateLimited

router = APIRouter(prefix="/api/v1/meetings", tags=["meetings"])
EMPLOYEE_OR_INTEGRATION = require_role(Role.EMPLOYEE, integrations=True)
# In-meeting controls: the meeting's host, or a responder on any meeting (the service
# checks which; anyone else gets 404). Ending is also for the integration that created the
# meeting; rotating, locking, removing people and the attendance list are not.
HOST_OR_RESPONDER = require_role(Role.EMPLOYEE, Role.RESPONDER)
HOST_RESPONDER_OR_INTEGRATION = require_role(Role.EMPLOYEE, Role.RESPONDER, integrations=True)
# Creating a meeting: scope, role and write limit as one dependency (`authorized` says why).
MeetingWriter = Annotated[
    Principal,
    authorized("meetings:write", Role.EMPLOYEE, integrations=True, write_limited=True),
]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string per logical request; retries with it never create "
        "a second meeting. Kept 24 hours, scoped to the caller.",
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=MeetingRead,
    responses=responses(
        InvalidRequest,
        PolicyViolation,
        ControlNotEnforceable,
        IdempotencyKeyReused,
        IdempotencyKeyInFlight,
        IdempotencyKeyLost,
        ProviderUnknown,
        ProviderRetriable,
        VerificationFailed,
        AuthenticationFailed,
        PermissionDenied,
        RateLimited,
    ),
)
async def create_meeting(
    body: MeetingCreate,
    principal: MeetingWriter,
    state: StateDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Provision one unique, policy-checked meeting and queue private delivery to each invitee."""
    provider = pick(state.providers, body.provider or state.settings.default_provider)
    result = await provision_for(
        state.provisioning,
        request=body,
        caller=principal,
        provider=provider,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(body.model_dump(mode="json")),
    )
    if not result.replayed:
        state.worker.wake()
    headers = {"Location": f"/api/v1/meetings/{result.meeting_id}"} if result.meeting_id else {}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    headers["Cache-Control"] = "no-store"
    return JSONResponse(result.body, status_code=result.status, headers=headers)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ended at. Anything we would not have written -- a time
    without its offset, one that leaves the calendar in UTC, an id that is not a UUID --
    is bad input."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, meeting_id = raw.split("|", 1)
        after = datetime.fromisoformat(stamp)
        if after.tzinfo is None:
            raise ValueError("not a cursor of ours")
        return after.astimezone(UTC), str(uuid.UUID(meeting_id))
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise InvalidRequest(
            "cursor is not one this API returned", errors=(FieldError("cursor", "malformed"),)
        ) from None


def _encode_cursor(after: tuple[datetime, str]) -> str:
    raw = f"{after[0].isoformat()}|{after[1]}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@router.get(
    "",
    response_model=MeetingList,
    dependencies=[require_scope("meetings:read"), EMPLOYEE_OR_INTEGRATION],
    responses=responses(InvalidRequest, AuthenticationFailed, PermissionDenied),
)
async def list_meetings(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> MeetingList:
    """The caller's meetings, newest first (no join details in the list)."""
    rows, after = await list_meetings_for_host(
        session, host=principal, limit=limit, after=_decode_cursor(cursor) if cursor else None
    )
    return MeetingList(
        data=[
            MeetingSummary(
                id=m.id,
                topic=m.topic,
                provider=m.provider,
                state=m.state,
                start=m.starts_at,
                end=m.ends_at,
                timezone=m.timezone,
                invitee_count=count,
                created_at=m.created_at,
            )
            for m, count in rows
        ],
        next_cursor=_encode_cursor(after) if after else None,
    )


@router.get(
    "/{meeting_id}",
    response_model=MeetingRead,
    dependencies=[require_scope("meetings:read"), EMPLOYEE_OR_INTEGRATION],
    responses=responses(MeetingNotFound, AuthenticationFailed, PermissionDenied),
)
async def get_meeting(
    meeting_id: Annotated[str, Path(max_length=64)],
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
) -> JSONResponse:
    """One of the caller's meetings, with the host's own link and passcode (for the host;
    an integration that created it reads it without them)."""
    meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=principal)
    status = await delivery_status_by_invitee(session, meeting.id)
    body = meeting_read(
        meeting,
        cipher=state.cipher,
        include_host_join=is_host(meeting, principal),
        delivery_status=status,
    )
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


MeetingId = Annotated[str, Path(max_length=64)]
LIFECYCLE_PROBLEMS = responses(
    RateLimited,
    MeetingNotFound,
    MeetingNotChangeable,
    ProviderUnsupported,
    ProviderRetriable,
    VerificationFailed,
    AuthenticationFailed,
    PermissionDenied,
)


async def _provider_of(
    state: StateDep, meeting_id: str, principal: CurrentPrincipal
) -> MeetingProvider:
    # A short session of its own: the lifecycle services open theirs around the provider
    # call, and on SQLite's single connection a request-long session would block them.
    async with state.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=principal)
    return pick(state.providers, meeting.provider)


@router.patch(
    "/{meeting_id}",
    response_model=MeetingRead,
    dependencies=[require_scope("meetings:write"), EMPLOYEE_OR_INTEGRATION, WriteRateLimit],
    responses=LIFECYCLE_PROBLEMS | responses(InvalidRequest),
)
async def reschedule(
    meeting_id: MeetingId, body: MeetingUpdate, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Move or rename a meeting; everyone gets an updated invitation (same UID, higher SEQUENCE)."""
    provider = await _provider_of(state, meeting_id, principal)
    result = await reschedule_meeting(
        state.provisioning, meeting_id=meeting_id, host=principal, change=body, provider=provider
    )
    state.worker.wake()
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


@router.delete(
    "/{meeting_id}",
    response_model=MeetingRead,
    dependencies=[require_scope("meetings:write"), EMPLOYEE_OR_INTEGRATION, WriteRateLimit],
    responses=LIFECYCLE_PROBLEMS,
)
async def cancel(
    meeting_id: MeetingId, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Cancel a meeting: deleted at the provider, a cancellation sent to everyone."""
    provider = await _provider_of(state, meeting_id, principal)
    result = await cancel_meeting(
        state.provisioning, meeting_id=meeting_id, host=principal, provider=provider
    )
    state.worker.wake()
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


@router.post(
    "/{meeting_id}/end",
    response_model=MeetingRead,
    dependencies=[require_scope("meetings:write"), HOST_RESPONDER_OR_INTEGRATION, WriteRateLimit],
    responses=LIFECYCLE_PROBLEMS,
)
async def end(meeting_id: MeetingId, principal: CurrentPrincipal, state: StateDep) -> JSONResponse:
    """End a running meeting for everyone, where the provider has an API for it.

    The host, or a responder on any meeting."""
    result = await _act(state, meeting_id, principal, end_meeting, actor_arg="host")
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


T = TypeVar("T")


async def _act(
    state: StateDep,
    meeting_id: str,
    principal: CurrentPrincipal,
    action: Callable[..., Awaitable[T]],
    *,
    actor_arg: str = "actor",
    **extra: object,
) -> T:
    """Run `action(provisioning, meeting_id=, actor=, provider=, **extra)` on a meeting
    the caller hosts, or on any meeting for a responder (anyone else gets 404).

    `actor_arg` names the keyword the caller goes in (`end_meeting` calls it `host`).
    """
    async with state.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=principal)
    provider = pick(state.providers, meeting.provider)
    return await action(
        state.provisioning,
        meeting_id=meeting_id,
        provider=provider,
        **{actor_arg: principal},
        **extra,
    )


ParticipantId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="The participant's id as GET .../attendance reports it.",
    ),
]


@router.post(
    "/{meeting_id}/rotate",
    status_code=201,
    response_model=MeetingRead,
    dependencies=[require_scope("meetings:write"), HOST_OR_RESPONDER, WriteRateLimit],
    responses=LIFECYCLE_PROBLEMS
    | responses(ControlNotEnforceable, RotationInProgress, RotationIncomplete),
)
async def rotate(
    meeting_id: MeetingId,
    principal: CurrentPrincipal,
    state: StateDep,
    body: RotateRequest | None = None,
) -> JSONResponse:
    """Replace a leaked link: a new meeting with a new passcode, sent privately to everyone
    invited; the old meeting is ended and deleted. Retrying returns the same new meeting."""
    reason = (body or RotateRequest()).reason
    result = await _act(state, meeting_id, principal, rotate_meeting, reason=reason)
    state.worker.wake()
    return JSONResponse(
        result,
        status_code=201,
        headers={"Location": f"/api/v1/meetings/{result['id']}", "Cache-Control": "no-store"},
    )


@router.post(
    "/{meeting_id}/lock",
    response_model=ControlOutcome,
    dependencies=[require_scope("meetings:write"), HOST_OR_RESPONDER, WriteRateLimit],
    responses=LIFECYCLE_PROBLEMS,
)
async def lock(
    meeting_id: MeetingId, principal: CurrentPrincipal, state: StateDep
) -> ControlOutcome:
    """Let nobody new into the running meeting (lock it, or send newcomers to the lobby)."""
    return await _act(state, meeting_id, principal, lock_meeting)


@router.post(
    "/{meeting_id}/participants/{participant_id}/expel",
    response_model=ControlOutcome,
    dependencies=[require_scope("meetings:write"), HOST_OR_RESPONDER, WriteRateLimit],
    responses=LIFECYCLE_PROBLEMS | responses(ParticipantNotFound),
)
async def expel(
    meeting_id: MeetingId,
    participant_id: ParticipantId,
    principal: CurrentPrincipal,
    state: StateDep,
) -> ControlOutcome:
    """Remove one participant from the running meeting, where the provider has an API."""
    return await _act(
        state, meeting_id, principal, expel_participant, participant_id=participant_id
    )


@router.get(
    "/{meeting_id}/attendance",
    response_model=AttendanceReport,
    dependencies=[require_scope("meetings:read"), HOST_OR_RESPONDER],
    responses=responses(
        MeetingNotFound,
        ProviderUnsupported,
        ProviderRetriable,
        AuthenticationFailed,
        PermissionDenied,
    ),
)
async def attendance(
    meeting_id: MeetingId, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Who is (or was) in the call, matched against the invite list; strangers flagged."""
    report: AttendanceReport = await _act(state, meeting_id, principal, check_attendance)
    return JSONResponse(report.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
