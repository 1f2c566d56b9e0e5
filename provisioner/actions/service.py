"""Mint, check and spend emergency action links; no HTTP here.

A link is checked in this order, and the first failure is the answer: the token's MAC,
the row, the signed-in user (must be the meeting's host), whether it was used, whether it
expired. Only then may the confirmation POST claim it, which is one conditional UPDATE,
so two tabs confirming at once cannot both act.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.actions.errors import (
    ActionLinkExpired,
    ActionLinkInvalid,
    ActionLinkNotYours,
    ActionLinkUsed,
)
from provisioner.actions.models import ActionLink
from provisioner.actions.tokens import ActionLinkSigner
from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.db import utcnow
from provisioner.delivery.base import HostAction
from provisioner.meetings.models import Meeting
from provisioner.meetings.repository import host_subjects
from provisioner.settings import ActionsSettings


class Action(StrEnum):
    END = "end"
    ROTATE = "rotate"
    REPORT = "report"


@dataclass(frozen=True)
class ActionText:
    """What the host reads about one action, in the message and on the pages."""

    label: str
    hint: str
    question: str
    button: str


ACTION_TEXT: dict[Action, ActionText] = {
    Action.END: ActionText(
        label="End now for everyone",
        hint="closes the meeting at once for everyone in it",
        question="End this meeting now, for everyone in it?",
        button="Yes, end it for everyone",
    ),
    Action.ROTATE: ActionText(
        label="Rotate the link",
        hint="if the link leaked: the old one stops working and invitees get a new one",
        question="Replace this meeting's link and passcode? The old link stops working and "
        "every invitee is sent the new details privately.",
        button="Yes, rotate the link",
    ),
    Action.REPORT: ActionText(
        label="Report an incident",
        hint="tell the security team what happened, with the evidence kept",
        question="Report an incident in this meeting to the security team?",
        button="Continue to the report form",
    ),
}


def action_or_none(value: str) -> Action | None:
    try:
        return Action(value)
    except ValueError:
        return None


def link_expiry(ends_at: datetime, *, now: datetime, settings: ActionsSettings) -> datetime:
    """Shortly after the meeting ends, and never more than `max_lifetime_days` away."""
    return min(
        ends_at + timedelta(minutes=settings.margin_minutes),
        now + timedelta(days=settings.max_lifetime_days),
    )


@dataclass(frozen=True)
class HostActionLinks:
    """What the worker needs to put the emergency links into a host's copy."""

    signer: ActionLinkSigner
    base_url: str
    settings: ActionsSettings

    def url(self, link_id: str) -> str:
        """The absolute URL a host follows (the public base URL, since it leaves the app)."""
        return f"{self.base_url.rstrip('/')}/actions/{self.signer.token(link_id)}"

    async def for_delivery(
        self, session: AsyncSession, *, meeting: Meeting, delivery_id: str, now: datetime
    ) -> tuple[HostAction, ...]:
        """The three links for one host delivery, minted on its first attempt and reused
        on every retry (so a resent message never carries links that differ)."""
        rows = {
            row.action: row
            for row in await session.scalars(
                select(ActionLink).where(ActionLink.delivery_id == delivery_id)
            )
        }
        for action in Action:
            if action not in rows:
                row = ActionLink(
                    id=str(uuid.uuid4()),
                    meeting_id=meeting.id,
                    delivery_id=delivery_id,
                    host_subject=meeting.host_subject,
                    action=action.value,
                    created_at=now,
                    expires_at=link_expiry(meeting.ends_at, now=now, settings=self.settings),
                )
                session.add(row)
                rows[action] = row
        await session.flush()
        return tuple(
            HostAction(
                action=action.value,
                label=ACTION_TEXT[action].label,
                hint=ACTION_TEXT[action].hint,
                url=self.url(rows[action].id),
            )
            for action in Action
        )


async def check_link(
    session: AsyncSession, *, link_id: str | None, user: Principal, now: datetime
) -> ActionLink:
    """The link, if `user` may use it now.

    Raises:
        ActionLinkInvalid: bad token (`link_id` None) or no such row.
        ActionLinkNotYours: `user` is not the meeting's host.
        ActionLinkUsed: it was used before.
        ActionLinkExpired: it is past its expiry.
    """
    link = await session.get(ActionLink, link_id) if link_id is not None else None
    if link is None:
        raise ActionLinkInvalid("this link is not valid")
    if link.host_subject not in host_subjects(user):
        raise ActionLinkNotYours(f"action link {link.id} belongs to another user")
    if link.used_at is not None:
        raise ActionLinkUsed(f"action link {link.id} was used at {link.used_at.isoformat()}")
    if link.expires_at <= now:
        raise ActionLinkExpired(f"action link {link.id} expired at {link.expires_at.isoformat()}")
    return link


async def claim_link(session: AsyncSession, link: ActionLink, *, user: Principal) -> None:
    """Spend the link: only one caller can win, however many confirm at once.

    Raises:
        ActionLinkUsed: another request spent it first.
    """
    result = await session.execute(
        update(ActionLink)
        .where(ActionLink.id == link.id, ActionLink.used_at.is_(None))
        .values(used_at=utcnow(), used_by=user.subject)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise ActionLinkUsed(f"action link {link.id} was used by another request")


async def release_link(session: AsyncSession, link_id: str) -> None:
    """Give the link back when the action could not be carried out: nothing changed, so
    the host must be able to try again."""
    await session.execute(
        update(ActionLink)
        .where(ActionLink.id == link_id)
        .values(used_at=None, used_by=None)
        .execution_options(synchronize_session=False)
    )


USED_OUTCOMES = frozenset({"done", "incomplete"})


async def record_action(
    session: AsyncSession,
    *,
    user: Principal,
    meeting_id: str | None,
    action: str,
    outcome: str,
    link_id: str | None,
    via: str,
) -> None:
    """Audit one use or refusal. The link id is not secret (the MAC is); the token never
    goes into the record."""
    await record_event(
        session,
        actor=user.subject,
        # "incomplete": the action ran and changed things, only not all of them.
        action="action_link.used" if outcome in USED_OUTCOMES else "action_link.refused",
        target_type="meeting" if meeting_id else "action_link",
        target_id=meeting_id or (link_id or "unknown"),
        details={"action": action, "outcome": outcome, "link_id": link_id, "via": via},
    )
