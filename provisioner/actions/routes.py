"""The pages behind the host's emergency links, and the same actions from the meeting page.

GET only shows what would happen (after sign-in); the POST from that page, with the
session's CSRF token, acts. Every use and every refusal is audited, each in its own
transaction so a refusal is recorded even though nothing else changes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from provisioner.actions.errors import ActionNotPossible, ActionRefused
from provisioner.actions.flows import ActionOutcome, carry_out
from provisioner.actions.models import ActionLink
from provisioner.actions.service import (
    ACTION_TEXT,
    Action,
    action_or_none,
    check_link,
    claim_link,
    record_action,
    release_link,
)
from provisioner.actions.tokens import ActionLinkSigner
from provisioner.auth.deps import StateDep
from provisioner.auth.principal import Principal
from provisioner.db import utcnow
from provisioner.meetings.models import Meeting
from provisioner.meetings.repository import get_meeting_for_host
from provisioner.state import AppState
from provisioner.web.deps import CSRF_CHECKED, WebUser
from provisioner.web.render import page, viewer_zone

router = APIRouter(tags=["web"], include_in_schema=False)
Token = Annotated[str, Path(max_length=128)]
MeetingId = Annotated[str, Path(max_length=64)]
ActionName = Annotated[str, Path(max_length=16)]

# What the person is told for each refusal; none of it depends on who owns the link.
REFUSAL_TEXT = {
    "invalid": "This link is not valid. It may have been copied incompletely. "
    "Open the meeting from My meetings instead.",
    "other-user": "This link was sent to the meeting's host and works only for them. "
    "Nothing was changed.",
    "used": "This link has already been used: each emergency link works once. "
    "Nothing was changed. Open the meeting from My meetings for its current state.",
    "expired": "This link has expired: emergency links stop working shortly after the "
    "meeting ends. Nothing was changed.",
}


async def _checked(state: AppState, token: str, user: Principal) -> tuple[ActionLink, Meeting]:
    link_id = ActionLinkSigner.from_cipher(state.cipher).link_id(token)
    async with state.db.session() as session:
        link = await check_link(session, link_id=link_id, user=user, now=utcnow())
        meeting = await get_meeting_for_host(session, meeting_id=link.meeting_id, host=user)
    return link, meeting


async def _refused(
    request: Request, state: AppState, user: Principal, exc: ActionRefused, *, token: str
) -> Response:
    link_id = ActionLinkSigner.from_cipher(state.cipher).link_id(token)
    async with state.db.session() as session:
        link = await session.get(ActionLink, link_id) if link_id else None
        await record_action(
            session,
            user=user,
            # Filed under the meeting even for another user: IT should see that a
            # host's link was forwarded.
            meeting_id=link.meeting_id if link is not None else None,
            action=link.action if link is not None else "unknown",
            outcome=exc.reason,
            link_id=link.id if link is not None else None,
            via="link",
        )
    return page(
        request,
        "action_refused.html",
        message=REFUSAL_TEXT.get(exc.reason, exc.detail),
        status_code=exc.status,
    )


def _confirm_page(request: Request, meeting: Meeting, action: Action, *, post_url: str) -> Response:
    return page(
        request,
        "action_confirm.html",
        meeting=meeting,
        action=action.value,
        text=ACTION_TEXT[action],
        post_url=post_url,
        zone=viewer_zone(request, meeting.timezone),
    )


def _outcome_page(request: Request, outcome: ActionOutcome) -> Response:
    if outcome.redirect is not None:
        return RedirectResponse(outcome.redirect, status_code=303)
    template = "action_incomplete.html" if outcome.outcome == "incomplete" else "action_done.html"
    return page(request, template, message=outcome.done, meeting_id=outcome.meeting_id)


@router.get("/actions/{token}")
async def confirm_action_link(
    request: Request, token: Token, user: WebUser, state: StateDep
) -> Response:
    """What the host's link opens: a confirmation, never the action itself."""
    try:
        link, meeting = await _checked(state, token, user)
    except ActionRefused as exc:
        return await _refused(request, state, user, exc, token=token)
    return _confirm_page(request, meeting, Action(link.action), post_url=f"/actions/{token}")


@router.post("/actions/{token}", dependencies=[CSRF_CHECKED])
async def use_action_link(
    request: Request, token: Token, user: WebUser, state: StateDep
) -> Response:
    """The confirmation: spend the link, act, audit; give the link back if nothing changed."""
    try:
        link, meeting = await _checked(state, token, user)
        async with state.db.session() as session:
            await claim_link(session, link, user=user)
    except ActionRefused as exc:
        return await _refused(request, state, user, exc, token=token)
    action = Action(link.action)
    try:
        outcome = await carry_out(
            state.provisioning,
            providers=state.providers,
            meeting_id=meeting.id,
            action=action,
            host=user,
        )
    except ActionNotPossible as exc:
        async with state.db.session() as session:
            await release_link(session, link.id)
            await record_action(
                session,
                user=user,
                meeting_id=meeting.id,
                action=action.value,
                outcome=exc.reason,
                link_id=link.id,
                via="link",
            )
        return page(request, "action_refused.html", message=exc.detail, status_code=exc.status)
    except Exception:
        # Nothing is known to have happened: give the link back so the host can try again.
        async with state.db.session() as session:
            await release_link(session, link.id)
            await record_action(
                session,
                user=user,
                meeting_id=meeting.id,
                action=action.value,
                outcome="error",
                link_id=link.id,
                via="link",
            )
        raise
    async with state.db.session() as session:
        await record_action(
            session,
            user=user,
            meeting_id=meeting.id,
            action=action.value,
            outcome=outcome.outcome,
            link_id=link.id,
            via="link",
        )
    state.worker.wake()
    return _outcome_page(request, outcome)


@router.get("/meetings/{meeting_id}/emergency/{action}")
async def confirm_from_page(
    request: Request, meeting_id: MeetingId, action: ActionName, user: WebUser, state: StateDep
) -> Response:
    """The meeting page's buttons: the host is signed in already, so no token is needed."""
    chosen = action_or_none(action)
    async with state.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=user)
    if chosen is None:
        return page(
            request,
            "action_refused.html",
            message="There is no such emergency action.",
            status_code=404,
        )
    return _confirm_page(
        request, meeting, chosen, post_url=f"/meetings/{meeting.id}/emergency/{chosen.value}"
    )


@router.post("/meetings/{meeting_id}/emergency/{action}", dependencies=[CSRF_CHECKED])
async def act_from_page(
    request: Request, meeting_id: MeetingId, action: ActionName, user: WebUser, state: StateDep
) -> Response:
    chosen = action_or_none(action)
    if chosen is None:
        return page(
            request,
            "action_refused.html",
            message="There is no such emergency action.",
            status_code=404,
        )
    try:
        outcome = await carry_out(
            state.provisioning,
            providers=state.providers,
            meeting_id=meeting_id,
            action=chosen,
            host=user,
        )
    except ActionNotPossible as exc:
        async with state.db.session() as session:
            await record_action(
                session,
                user=user,
                meeting_id=meeting_id,
                action=chosen.value,
                outcome=exc.reason,
                link_id=None,
                via="page",
            )
        return page(request, "action_refused.html", message=exc.detail, status_code=exc.status)
    async with state.db.session() as session:
        await record_action(
            session,
            user=user,
            meeting_id=meeting_id,
            action=chosen.value,
            outcome=outcome.outcome,
            link_id=None,
            via="page",
        )
    state.worker.wake()
    return _outcome_page(request, outcome)
