"""HTTP for incidents: thin handlers over `incidents.service` and `incidents.export`.

Access is decided by the service (reporter or responder; anyone else gets 404); every
route that changes something also needs the `meetings:write` scope (403 without it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.auth.deps import CurrentPrincipal, StateDep, WriteRateLimit, require_scope
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.incidents.errors import (
    EvidenceTampered,
    IncidentNotFound,
    InvalidIncident,
    TransitionRefused,
)
from provisioner.incidents.export import incident_json, provider_notice
from provisioner.incidents.filing import Incidents, decode_attachments, file_incident
from provisioner.incidents.schemas import (
    FollowUpUpdate,
    IncidentCreate,
    IncidentList,
    IncidentRead,
    IncidentSummary,
    NoteCreate,
    TransitionCreate,
)
from provisioner.incidents.service import (
    acknowledge_training,
    add_note,
    get_incident,
    get_training,
    list_incidents,
    run_verified,
    transition,
    update_follow_ups,
)
from provisioner.meetings.errors import MeetingNotFound
from provisioner.problems import responses
from provisioner.ratelimit import RateLimited
from provisioner.state import AppState

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
IncidentId = Annotated[str, Path(max_length=64)]
READ_ERRORS = responses(IncidentNotFound, EvidenceTampered, AuthenticationFailed)
# Every change (filing, notes, transitions, follow-ups, the host's acknowledgement) needs
# the same scope as changing a meeting, so a read-only token can read but not file or work
# a report. Browser pages (`pages.py`) act through the session and are not affected.
WRITES = require_scope("meetings:write")


def incidents_of(state: AppState) -> Incidents:
    return Incidents(
        db=state.db, cipher=state.cipher, settings=state.settings, providers=state.providers
    )


async def _record(
    state: AppState, incident_id: str, principal: CurrentPrincipal, status_code: int = 200
) -> JSONResponse:
    async def work(session: AsyncSession) -> dict[str, Any]:
        view = await get_incident(session, incident_id=incident_id, viewer=principal)
        return incident_json(view, state.settings)

    body = await run_verified(state.db, incident_id=incident_id, viewer=principal, work=work)
    return JSONResponse(jsonable_encoder(body), status_code=status_code)


async def _change(
    state: AppState,
    incident_id: str,
    principal: CurrentPrincipal,
    change: Callable[[AsyncSession], Awaitable[object]],
    status_code: int = 200,
) -> JSONResponse:
    """Run `change` on the verified incident in one transaction, then answer with the record."""
    await run_verified(state.db, incident_id=incident_id, viewer=principal, work=change)
    return await _record(state, incident_id, principal, status_code=status_code)


@router.post(
    "",
    status_code=201,
    response_model=IncidentRead,
    dependencies=[WRITES, WriteRateLimit],
    responses=responses(
        RateLimited, MeetingNotFound, InvalidIncident, AuthenticationFailed, PermissionDenied
    ),
)
async def report_incident(
    body: IncidentCreate, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Report what happened in a meeting you hosted or were invited to.

    Freezes the evidence, notifies the host, your manager and HR/security privately, and
    returns the incident with its verified evidence.
    """
    incident_id = await file_incident(
        incidents_of(state),
        reporter=principal,
        request=body,
        attachments=decode_attachments(body),
    )
    state.worker.wake()
    return await _record(state, incident_id, principal, status_code=201)


@router.get("", response_model=IncidentList, responses=responses(AuthenticationFailed))
async def incidents(principal: CurrentPrincipal, state: StateDep) -> IncidentList:
    """Every incident for a responder; your own reports otherwise."""
    async with state.db.session() as session:
        rows = await list_incidents(session, viewer=principal)
    return IncidentList(
        items=[
            IncidentSummary(
                id=r.id,
                meeting_id=r.meeting_id,
                summary=r.summary,
                status=r.status,
                reporter_email=r.reporter_email,
                created_at=r.created_at,
            )
            for r in rows
        ]
    )


@router.get("/{incident_id}", response_model=IncidentRead, responses=READ_ERRORS)
async def read_incident(
    incident_id: IncidentId, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """The incident with its evidence, verified against its hash on this read."""
    return await _record(state, incident_id, principal)


@router.get("/{incident_id}/provider-notice", responses=READ_ERRORS | responses(PermissionDenied))
async def read_provider_notice(
    incident_id: IncidentId, principal: CurrentPrincipal, state: StateDep
) -> dict[str, str]:
    """The prepared notice to the provider's abuse contact (you send it; then record it).

    Responders only: it lists who attended.
    """

    async def work(session: AsyncSession) -> dict[str, str]:
        view = await get_incident(session, incident_id=incident_id, viewer=principal)
        notice = provider_notice(view, state.settings)
        return {"contact": notice.contact, "subject": notice.subject, "body": notice.body}

    return await run_verified(state.db, incident_id=incident_id, viewer=principal, work=work)


@router.get("/{incident_id}/attachments/{attachment_id}", responses=READ_ERRORS)
async def download_attachment(
    incident_id: IncidentId,
    attachment_id: Annotated[str, Path(max_length=64)],
    principal: CurrentPrincipal,
    state: StateDep,
) -> Response:
    """One attachment, always as a download (never rendered inline in our origin)."""

    async def work(session: AsyncSession) -> Response:
        view = await get_incident(session, incident_id=incident_id, viewer=principal)
        for attachment in view.incident.attachments:
            if attachment.id == attachment_id:
                return Response(
                    attachment.content,
                    media_type="application/octet-stream",
                    headers={
                        "Content-Disposition": f'attachment; filename="{attachment.id}"',
                        "X-Content-Type-Options": "nosniff",
                        "Digest": f"sha-256={attachment.sha256}",
                    },
                )
        raise IncidentNotFound(incident_id)

    return await run_verified(state.db, incident_id=incident_id, viewer=principal, work=work)


@router.post(
    "/{incident_id}/notes",
    status_code=201,
    dependencies=[WRITES, WriteRateLimit],
    responses=responses(RateLimited, IncidentNotFound, EvidenceTampered, PermissionDenied),
)
async def post_note(
    incident_id: IncidentId, body: NoteCreate, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Add a responder's note (audited)."""
    return await _change(
        state,
        incident_id,
        principal,
        lambda session: add_note(
            session, incident_id=incident_id, author=principal, body=body.body
        ),
        status_code=201,
    )


@router.post(
    "/{incident_id}/transitions",
    dependencies=[WRITES, WriteRateLimit],
    responses=responses(
        RateLimited, IncidentNotFound, EvidenceTampered, PermissionDenied, TransitionRefused
    ),
)
async def post_transition(
    incident_id: IncidentId, body: TransitionCreate, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Move the incident new -> triaged -> resolved (one step at a time, audited)."""
    return await _change(
        state,
        incident_id,
        principal,
        lambda session: transition(
            session, incident_id=incident_id, actor=principal, to=body.status, note=body.note
        ),
    )


@router.patch(
    "/{incident_id}/follow-ups",
    dependencies=[WRITES, WriteRateLimit],
    responses=responses(
        RateLimited, IncidentNotFound, EvidenceTampered, PermissionDenied, InvalidIncident
    ),
)
async def patch_follow_ups(
    incident_id: IncidentId, body: FollowUpUpdate, principal: CurrentPrincipal, state: StateDep
) -> JSONResponse:
    """Record the follow-ups: fixes applied, law enforcement, notice sent to the provider."""
    return await _change(
        state,
        incident_id,
        principal,
        lambda session: update_follow_ups(
            session, incident_id=incident_id, actor=principal, update=body
        ),
    )


@router.get("/{incident_id}/training", responses=responses(IncidentNotFound))
async def read_training(
    incident_id: IncidentId, principal: CurrentPrincipal, state: StateDep
) -> dict[str, Any]:
    """For the meeting's host: the security follow-up they are asked to acknowledge."""
    async with state.db.session() as session:
        incident, meeting = await get_training(session, incident_id=incident_id, host=principal)
    body: dict[str, Any] = jsonable_encoder(
        {
            "incident_id": incident.id,
            "meeting_topic": meeting.topic,
            "training_url": state.settings.incidents.training_url,
            "acknowledged_at": incident.training_acknowledged_at,
        }
    )
    return body


@router.post(
    "/{incident_id}/training/acknowledge",
    dependencies=[WRITES, WriteRateLimit],
    responses=responses(RateLimited, IncidentNotFound, PermissionDenied),
)
async def post_training_acknowledgement(
    incident_id: IncidentId, principal: CurrentPrincipal, state: StateDep
) -> dict[str, Any]:
    """The host confirms they completed the follow-up (audited; repeating it is harmless)."""
    async with state.db.session() as session:
        incident = await acknowledge_training(session, incident_id=incident_id, host=principal)
        acknowledged = incident.training_acknowledged_at
    body: dict[str, Any] = jsonable_encoder(
        {"incident_id": incident_id, "acknowledged_at": acknowledged}
    )
    return body
