"""HTML pages: thin handlers over the same service functions as the API."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from provisioner.admin.service import list_all_meetings, policy_by_group, search_audit
from provisioner.auth.deps import SessionDep, StateDep
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.roles import Role
from provisioner.briefing.content import render_card_html
from provisioner.briefing.errors import BriefingNotAcknowledged
from provisioner.db import utcnow
from provisioner.delivery.render import default_template_dir, make_template_environment
from provisioner.errors import ProvisionerError
from provisioner.idempotency.service import request_fingerprint
from provisioner.meetings.access import get_meeting_for_actor, is_host
from provisioner.meetings.codec import settings_from_json
from provisioner.meetings.lifecycle import cancel_meeting
from provisioner.meetings.on_behalf import provision_for
from provisioner.meetings.read import meeting_read
from provisioner.meetings.repository import (
    delivery_status_by_invitee,
    get_meeting_for_host,
    list_meetings_for_host,
)
from provisioner.policy.model import Control
from provisioner.policy.render import effective_policy_as_dict
from provisioner.policy.resolve import effective_for_groups
from provisioner.problems import status_for
from provisioner.providers.registry import pick
from provisioner.web.controls import TEXTS as CONTROL_TEXTS
from provisioner.web.controls import attendance_panel
from provisioner.web.controls import router as controls_router
from provisioner.web.deps import CSRF_CHECKED, WebUser, require_page_role
from provisioner.web.forms import FormState, add_errors, control_views, default_start, read_form
from provisioner.web.render import page, viewer_zone

router = APIRouter(tags=["web"], include_in_schema=False)
EMPLOYEE = require_page_role(Role.EMPLOYEE)
IT_ADMIN = require_page_role(Role.IT_ADMIN)
HOST_OR_RESPONDER = require_page_role(Role.EMPLOYEE, Role.RESPONDER)
MeetingId = Annotated[str, Path(max_length=64)]
# The message templates (templates/briefing/), for the security card on the meeting page.
MESSAGE_TEMPLATES = make_template_environment(default_template_dir())


@router.get("/")
async def home(user: WebUser) -> Response:
    """Admins land on the meeting overview, everyone else on their own meetings."""
    return RedirectResponse(
        "/admin/meetings" if user.has_role(Role.IT_ADMIN) else "/meetings", status_code=303
    )


@router.get("/meetings", dependencies=[EMPLOYEE])
async def my_meetings(request: Request, user: WebUser, session: SessionDep) -> Response:
    rows, _ = await list_meetings_for_host(session, host=user, limit=100, after=None)
    return page(request, "meetings.html", meetings=rows)


def _form_page(
    request: Request,
    state: StateDep,
    user: WebUser,
    form: FormState,
    *,
    status_code: int = 200,
) -> Response:
    policy = effective_policy_as_dict(effective_for_groups(state.policy, user.groups))
    zone = viewer_zone(request, "UTC")
    values = {
        "topic": "",
        "start": default_start(utcnow() + timedelta(days=1)),
        "duration_minutes": "30",
        "timezone": zone,
        "invitees": "",
        "provider": state.settings.default_provider,
        "idempotency_key": secrets.token_urlsafe(16),
        **form.values,
    }
    return page(
        request,
        "meeting_new.html",
        controls=control_views(policy),  # type: ignore[arg-type]
        providers=sorted(state.providers),
        values=values,
        errors=form.errors,
        general=form.general,
        status_code=status_code,
    )


@router.get("/meetings/new", dependencies=[EMPLOYEE])
async def new_meeting(request: Request, state: StateDep, user: WebUser) -> Response:
    return _form_page(request, state, user, FormState())


@router.post("/meetings/new", dependencies=[EMPLOYEE, CSRF_CHECKED])
async def request_meeting(request: Request, state: StateDep, user: WebUser) -> Response:
    """The form's submit: provision through the same service as POST /api/v1/meetings."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    body, form_state = read_form(form)
    if body is None:
        return _form_page(request, state, user, form_state, status_code=422)
    try:
        provider = pick(state.providers, body.provider or state.settings.default_provider)
        result = await provision_for(
            state.provisioning,
            request=body,
            caller=user,
            provider=provider,
            idempotency_key=_idempotency_key(form.get("idempotency_key")),
            fingerprint=request_fingerprint(body.model_dump(mode="json")),
        )
    except BriefingNotAcknowledged as exc:
        return RedirectResponse(f"/briefings/{exc.provider}?next=/meetings/new", status_code=303)
    except (AuthenticationFailed, PermissionDenied):
        raise
    except ProvisionerError as exc:
        add_errors(form_state, exc.errors)
        if not exc.errors:
            form_state.general.append(exc.detail)
        return _form_page(request, state, user, form_state, status_code=status_for(exc))
    state.worker.wake()
    return RedirectResponse(f"/meetings/{result.meeting_id}", status_code=303)


@router.get("/meetings/{meeting_id}", dependencies=[HOST_OR_RESPONDER])
async def meeting_detail(
    request: Request,
    meeting_id: MeetingId,
    user: WebUser,
    state: StateDep,
    attendance: Annotated[bool, Query()] = False,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The host's view: link and passcode (with a copy button) and each invitee's delivery.

    A responder sees the same page without the host's link, with the in-meeting controls.
    While the meeting runs (or on `?attendance=true`) it lists who is in the call.
    """
    # Short sessions, not SessionDep: the attendance check opens its own around the
    # provider call, and SQLite has one connection.
    async with state.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=user)
        status = await delivery_status_by_invitee(session, meeting.id)
        host = is_host(meeting, user)
        read = meeting_read(
            meeting, cipher=state.cipher, include_host_join=host, delivery_status=status
        )
    panel = await attendance_panel(state, meeting, user, requested=attendance)
    return page(
        request,
        "meeting_detail.html",
        meeting=meeting,
        read=read,
        zone=viewer_zone(request, meeting.timezone),
        is_host=host,
        controls=panel,
        done=CONTROL_TEXTS[done].done if done in CONTROL_TEXTS else None,
        # Security advice, not a secret: a responder may read it too.
        briefing=render_card_html(
            MESSAGE_TEMPLATES,
            provider=meeting.provider,
            settings=settings_from_json(meeting.settings),
            not_enforced=(Control(c) for c in meeting.not_enforced),
        ),
    )


@router.post("/meetings/{meeting_id}/cancel", dependencies=[EMPLOYEE, CSRF_CHECKED])
async def cancel_from_page(meeting_id: MeetingId, user: WebUser, state: StateDep) -> Response:
    async with state.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=user)
    await cancel_meeting(
        state.provisioning,
        meeting_id=meeting_id,
        host=user,
        provider=pick(state.providers, meeting.provider),
    )
    state.worker.wake()
    return RedirectResponse(f"/meetings/{meeting_id}", status_code=303)


@router.get("/admin/meetings", dependencies=[IT_ADMIN])
async def admin_meetings(request: Request, session: SessionDep) -> Response:
    return page(request, "admin_meetings.html", meetings=await list_all_meetings(session))


@router.get("/admin/policy", dependencies=[IT_ADMIN])
async def admin_policy(request: Request, state: StateDep) -> Response:
    return page(request, "admin_policy.html", policies=policy_by_group(state.policy))


@router.get("/admin/audit", dependencies=[IT_ADMIN])
async def admin_audit(
    request: Request,
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=80)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    events = await search_audit(session, action=action or None, target_id=target_id or None)
    return page(
        request,
        "admin_audit.html",
        events=events,
        action=action or "",
        target_id=target_id or "",
    )


_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency_key(value: object) -> str | None:
    """The form's hidden key, if it is one the API would accept (a tampered one is dropped:
    the request then simply is not deduplicated, which is safe)."""
    return value if isinstance(value, str) and _KEY.match(value) else None


router.include_router(controls_router)  # lock, expel, end and rotate for hosts and responders
