"""In-meeting controls from the meeting page: lock, expel, and (for responders) end and rotate.

Every action is two steps: a GET page that says what will happen and asks to confirm, and
the POST that does it (with the session's CSRF token), through the same service functions
as the API. The host's own end and rotate buttons are the emergency links
(`provisioner.actions`); responders, who are not hosts, get theirs here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from provisioner.auth.deps import StateDep
from provisioner.auth.errors import AuthenticationFailed, PermissionDenied
from provisioner.auth.principal import Principal
from provisioner.auth.roles import Role
from provisioner.db import utcnow
from provisioner.errors import ProvisionerError
from provisioner.meetings.access import get_meeting_for_actor
from provisioner.meetings.attendance import AttendanceReport, check_attendance, meeting_ref
from provisioner.meetings.controls import expel_participant, lock_meeting
from provisioner.meetings.lifecycle import CHANGEABLE, end_meeting
from provisioner.meetings.manual_steps import unsupported
from provisioner.meetings.models import Meeting
from provisioner.meetings.rotate import RotateRequest, rotate_meeting
from provisioner.meetings.service import START_SKEW
from provisioner.meetings.watcher import OVERRUN
from provisioner.problems import status_for
from provisioner.providers.base import Feature, MeetingProvider
from provisioner.providers.registry import pick
from provisioner.state import AppState
from provisioner.web.deps import CSRF_CHECKED, WebUser, require_page_role
from provisioner.web.render import page, viewer_zone

router = APIRouter(tags=["web"], include_in_schema=False)
HOST_OR_RESPONDER = require_page_role(Role.EMPLOYEE, Role.RESPONDER)
MeetingId = Annotated[str, Path(max_length=64)]
ControlName = Literal["end", "rotate", "lock", "expel"]
_PARTICIPANT = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class ControlText:
    title: str
    explanation: str
    button: str
    done: str


TEXTS: dict[str, ControlText] = {
    "end": ControlText(
        "End the meeting for everyone?",
        "Everyone leaves the call now, you included. The meeting cannot be restarted.",
        "End now for everyone",
        "The meeting has ended for everyone.",
    ),
    "rotate": ControlText(
        "Rotate the link?",
        "A new meeting with a new passcode replaces this one, and every invitee is sent the "
        "new details privately. The old meeting is ended and deleted, so the leaked link "
        "stops working.",
        "Rotate the link",
        "The link was rotated: this is the new meeting; everyone invited is being sent it.",
    ),
    "lock": ControlText(
        "Lock the meeting?",
        "Nobody new can join from now on (newcomers wait in the lobby where the provider "
        "has one). People already in the call stay.",
        "Lock the meeting",
        "The meeting is locked: nobody new can join.",
    ),
    "expel": ControlText(
        "Remove this participant from the meeting?",
        "They are removed from the call now. If they still have the link they may try "
        "again: lock the meeting or rotate the link as well.",
        "Remove from the meeting",
        "The participant was removed from the meeting.",
    ),
}


@dataclass(frozen=True)
class ControlsPanel:
    """What the meeting page offers: which controls work here, and who is in the call.

    A control the provider has no API for comes with the plain hint instead of a button.
    """

    live: bool
    can_expel: bool
    can_lock: bool
    can_end: bool
    lists_participants: bool
    expel_hint: str | None = None
    lock_hint: str | None = None
    report: AttendanceReport | None = None
    error: str | None = None


async def attendance_panel(
    state: AppState, meeting: Meeting, user: Principal, *, requested: bool
) -> ControlsPanel:
    """The controls section; asks the provider who is in the call only while the meeting
    runs (or when the viewer asked), since every look is a provider API call."""
    provider = state.providers.get(meeting.provider)
    live = meeting.state in CHANGEABLE
    if provider is None:
        return ControlsPanel(live, False, False, False, False)
    features = provider.features
    panel = ControlsPanel(
        live=live,
        can_expel=live and Feature.EXPEL in features,
        can_lock=live and Feature.LOCK in features,
        can_end=live and Feature.END_FOR_ALL in features,
        lists_participants=Feature.PARTICIPANTS in features,
        expel_hint=_hint(provider, Feature.EXPEL),
        lock_hint=_hint(provider, Feature.LOCK),
    )
    now = utcnow()
    running = meeting.starts_at - START_SKEW <= now <= meeting.ends_at + OVERRUN
    if not panel.lists_participants or not (requested or (live and running)):
        return panel
    try:
        report = await check_attendance(
            state.provisioning, meeting_id=meeting.id, actor=user, provider=provider
        )
    except (AuthenticationFailed, PermissionDenied):
        raise
    except ProvisionerError as exc:
        return replace(panel, error=exc.detail)
    return replace(panel, report=report)


def _hint(provider: MeetingProvider, feature: Feature) -> str | None:
    return None if feature in provider.features else unsupported(provider, feature).detail


def _confirm(
    request: Request,
    meeting: Meeting,
    action: str,
    *,
    participant_id: str | None = None,
    participant_name: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "meeting_control_confirm.html",
        meeting=meeting,
        action=action,
        text=TEXTS[action],
        participant_id=participant_id,
        participant_name=participant_name,
        error=error,
        zone=viewer_zone(request, meeting.timezone),
        status_code=status_code,
    )


async def _meeting(state: AppState, meeting_id: str, user: Principal) -> Meeting:
    async with state.db.session() as session:
        return await get_meeting_for_actor(session, meeting_id=meeting_id, actor=user)


@router.get("/meetings/{meeting_id}/controls/{action}", dependencies=[HOST_OR_RESPONDER])
async def confirm_control(
    request: Request,
    meeting_id: MeetingId,
    action: ControlName,
    user: WebUser,
    state: StateDep,
    participant: Annotated[str | None, Query(max_length=255)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,  # ignored: see below
) -> Response:
    """The confirmation step: what will happen, and one button to do it.

    The name shown for a participant comes from the provider's own list, never from the
    `name` in the URL: a crafted link could otherwise show one name while removing someone
    else. If the provider cannot say, only the participant id is shown.
    """
    meeting = await _meeting(state, meeting_id, user)
    if action != "expel":
        return _confirm(request, meeting, action)
    if participant is None or not _PARTICIPANT.match(participant):
        return _confirm(
            request, meeting, action, error="Choose the participant to remove.", status_code=422
        )
    shown = await _participant_name(state, meeting, participant)
    return _confirm(request, meeting, action, participant_id=participant, participant_name=shown)


async def _participant_name(state: AppState, meeting: Meeting, participant_id: str) -> str | None:
    """The display name the provider lists for `participant_id`, or None if it cannot say."""
    ref = meeting_ref(meeting)
    try:
        provider = pick(state.providers, meeting.provider)
        if ref is None or Feature.PARTICIPANTS not in provider.features:
            return None
        seen = await provider.list_participants(ref)
    except (ProvisionerError, TimeoutError):
        return None
    for person in seen:
        if person.provider_participant_id == participant_id:
            return person.name
    return None


@router.post(
    "/meetings/{meeting_id}/controls/{action}", dependencies=[HOST_OR_RESPONDER, CSRF_CHECKED]
)
async def act(
    request: Request, meeting_id: MeetingId, action: ControlName, user: WebUser, state: StateDep
) -> Response:
    """Do the confirmed action; on failure show the confirmation page again with why."""
    meeting = await _meeting(state, meeting_id, user)
    form = await request.form()
    participant = form.get("participant_id")
    participant_id = participant if isinstance(participant, str) else None
    reason = form.get("reason")
    target = meeting.id
    try:
        # The API's rules for the audited reason (one line of plain text, 200 at most):
        # a terminal escape typed here would otherwise reach `provisioner audit show`.
        why = (
            RotateRequest(reason=reason.strip())
            if isinstance(reason, str) and reason.strip()
            else RotateRequest()
        )
    except ValidationError:
        return _confirm(
            request,
            meeting,
            action,
            error="Give the reason as one line of plain text, at most 200 characters.",
            status_code=422,
        )
    try:
        provider = pick(state.providers, meeting.provider)
        deps = state.provisioning
        if action == "end":
            await end_meeting(deps, meeting_id=meeting.id, host=user, provider=provider)
        elif action == "rotate":
            rotated = await rotate_meeting(
                deps,
                meeting_id=meeting.id,
                actor=user,
                provider=provider,
                reason=why.reason,
            )
            target = str(rotated["id"])
        elif action == "lock":
            await lock_meeting(deps, meeting_id=meeting.id, actor=user, provider=provider)
        else:
            if participant_id is None or not _PARTICIPANT.match(participant_id):
                return _confirm(
                    request,
                    meeting,
                    action,
                    error="Choose the participant to remove.",
                    status_code=422,
                )
            await expel_participant(
                deps,
                meeting_id=meeting.id,
                participant_id=participant_id,
                actor=user,
                provider=provider,
            )
    except (AuthenticationFailed, PermissionDenied):
        raise
    except ProvisionerError as exc:
        return _confirm(
            request,
            meeting,
            action,
            participant_id=participant_id,
            error=exc.detail,
            status_code=status_for(exc),
        )
    state.worker.wake()
    return RedirectResponse(f"/meetings/{target}?done={action}", status_code=303)
