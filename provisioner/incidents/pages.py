"""HTML pages for incidents: the report form, the incident page, exports, the host follow-up.

Thin handlers over the same service functions as the API. Every form carries the session's
CSRF token; the report form is multipart so a screenshot can be attached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from provisioner.auth.deps import StateDep
from provisioner.auth.principal import Principal
from provisioner.errors import FieldError
from provisioner.incidents.errors import InvalidIncident
from provisioner.incidents.export import incident_json, render_html
from provisioner.incidents.filing import (
    NewAttachment,
    check_attachments,
    file_incident,
    reportable_meeting,
)
from provisioner.incidents.routes import incidents_of
from provisioner.incidents.schemas import FollowUpUpdate, IncidentCreate
from provisioner.incidents.service import (
    IncidentView,
    acknowledge_training,
    add_note,
    get_incident,
    get_training,
    list_incidents,
    run_verified,
    transition,
    update_follow_ups,
)
from provisioner.state import AppState
from provisioner.web.deps import CSRF_CHECKED, WebUser
from provisioner.web.render import page

router = APIRouter(tags=["web"], include_in_schema=False)
IncidentId = Annotated[str, Path(max_length=64)]


@router.get("/incidents")
async def incidents_page(request: Request, user: WebUser, state: StateDep) -> Response:
    async with state.db.session() as session:
        rows = await list_incidents(session, viewer=user)
    return page(request, "incidents.html", incidents=rows)


async def _form(
    request: Request,
    state: AppState,
    user: Principal,
    meeting_id: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    status_code: int = 200,
) -> Response:
    async with state.db.session() as session:
        meeting, role = await reportable_meeting(session, meeting_id=meeting_id, reporter=user)
    limits = state.settings.incidents
    return page(
        request,
        "incident_new.html",
        meeting=meeting,
        role=role,
        values={"summary": "", "statement": "", **(values or {})},
        errors=errors or {},
        accept=",".join(limits.attachment_types),
        max_files=limits.max_attachments,
        max_bytes=limits.max_attachment_bytes,
        status_code=status_code,
    )


@router.get("/incidents/new")
async def new_incident(
    request: Request,
    user: WebUser,
    state: StateDep,
    meeting: Annotated[str, Query(max_length=64)],
) -> Response:
    """The report form for a meeting the signed-in user hosted or was invited to."""
    return await _form(request, state, user, meeting)


@router.post("/incidents/new", dependencies=[CSRF_CHECKED])
async def submit_incident(request: Request, user: WebUser, state: StateDep) -> Response:
    form = await request.form()
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    meeting_id = text.get("meeting_id", "")[:64]
    values = {"summary": text.get("summary", ""), "statement": text.get("statement", "")}
    files = [
        NewAttachment(f.filename or "attachment", f.content_type or "", await f.read())
        for f in form.getlist("attachments")
        if isinstance(f, UploadFile) and (f.filename or f.size)
    ]
    try:
        body = IncidentCreate(meeting_id=meeting_id, **values)
        check_attachments(files, state.settings)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors():
            errors.setdefault(str(error["loc"][0]), []).append(error["msg"])
        return await _form(
            request, state, user, meeting_id, values=values, errors=errors, status_code=422
        )
    except InvalidIncident as exc:
        return await _form(
            request,
            state,
            user,
            meeting_id,
            values=values,
            errors=_by_field(exc.errors),
            status_code=422,
        )
    incident_id = await file_incident(
        incidents_of(state), reporter=user, request=body, attachments=files
    )
    state.worker.wake()
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


def _by_field(errors: tuple[FieldError, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for error in errors:
        out.setdefault(error.field.split("[", 1)[0], []).append(error.reason)
    return out


async def _verified(state: AppState, incident_id: str, user: Principal) -> IncidentView:
    async def work(session: AsyncSession) -> IncidentView:
        return await get_incident(session, incident_id=incident_id, viewer=user)

    return await run_verified(state.db, incident_id=incident_id, viewer=user, work=work)


@router.get("/incidents/{incident_id}")
async def incident_page(
    request: Request, incident_id: IncidentId, user: WebUser, state: StateDep
) -> Response:
    """The incident for its reporter or a responder; responders also get the work forms."""
    view = await _verified(state, incident_id, user)
    record = incident_json(view, state.settings)
    return page(
        request,
        "incident_detail.html",
        record=record,
        evidence=record["evidence"],
        responder=view.viewer_is_responder,
    )


@router.get("/incidents/{incident_id}/export.html")
async def export_html(incident_id: IncidentId, user: WebUser, state: StateDep) -> Response:
    """The self-contained report (inline CSS, no scripts): print it to PDF from the browser."""
    view = await _verified(state, incident_id, user)
    return HTMLResponse(
        render_html(view, state.settings),
        headers={
            "Cache-Control": "no-store",
            # Nothing in the report may load or run anything: styles are inline, that is all.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        },
    )


@router.get("/incidents/{incident_id}/export.json")
async def export_json(incident_id: IncidentId, user: WebUser, state: StateDep) -> Response:
    view = await _verified(state, incident_id, user)
    return JSONResponse(
        jsonable_encoder(incident_json(view, state.settings)),
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="incident-{view.incident.id}.json"',
        },
    )


async def _act(
    state: AppState,
    incident_id: str,
    user: Principal,
    work: Callable[[AsyncSession], Awaitable[None]],
) -> Response:
    await run_verified(state.db, incident_id=incident_id, viewer=user, work=work)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/transition", dependencies=[CSRF_CHECKED])
async def transition_from_page(
    request: Request, incident_id: IncidentId, user: WebUser, state: StateDep
) -> Response:
    form = await request.form()
    to, note = str(form.get("status", "")), str(form.get("note", ""))[:10_000]

    async def work(session: AsyncSession) -> None:
        await transition(session, incident_id=incident_id, actor=user, to=to, note=note)

    return await _act(state, incident_id, user, work)


@router.post("/incidents/{incident_id}/notes", dependencies=[CSRF_CHECKED])
async def note_from_page(
    request: Request, incident_id: IncidentId, user: WebUser, state: StateDep
) -> Response:
    body = str((await request.form()).get("body", "")).strip()[:10_000]
    if not body:
        raise InvalidIncident("write the note first", field="body")

    async def work(session: AsyncSession) -> None:
        await add_note(session, incident_id=incident_id, author=user, body=body)

    return await _act(state, incident_id, user, work)


@router.post("/incidents/{incident_id}/follow-ups", dependencies=[CSRF_CHECKED])
async def follow_ups_from_page(
    request: Request, incident_id: IncidentId, user: WebUser, state: StateDep
) -> Response:
    form = await request.form()
    police = str(form.get("law_enforcement_contacted", ""))
    update = FollowUpUpdate(
        fixes_applied=[str(v) for v in form.getlist("fixes_applied")][:50],
        law_enforcement_contacted={"yes": True, "no": False}.get(police),
        law_enforcement_reference=str(form.get("law_enforcement_reference", ""))[:200],
        provider_notice_sent=form.get("provider_notice_sent") == "on",
    )

    async def work(session: AsyncSession) -> None:
        await update_follow_ups(session, incident_id=incident_id, actor=user, update=update)

    return await _act(state, incident_id, user, work)


@router.get("/incidents/{incident_id}/training")
async def training_page(
    request: Request, incident_id: IncidentId, user: WebUser, state: StateDep
) -> Response:
    """The host's follow-up: what to review, and a button to confirm it is done."""
    async with state.db.session() as session:
        incident, meeting = await get_training(session, incident_id=incident_id, host=user)
    return page(
        request,
        "incident_training.html",
        incident=incident,
        meeting=meeting,
        training_url=state.settings.incidents.training_url,
    )


@router.post("/incidents/{incident_id}/training", dependencies=[CSRF_CHECKED])
async def acknowledge_from_page(
    incident_id: IncidentId, user: WebUser, state: StateDep
) -> Response:
    async with state.db.session() as session:
        await acknowledge_training(session, incident_id=incident_id, host=user)
    return RedirectResponse(f"/incidents/{incident_id}/training", status_code=303)
