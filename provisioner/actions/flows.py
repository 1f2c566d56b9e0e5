"""Carry out one confirmed emergency action through the same services as the API.

Returns what the host should see next; any reason the action could not happen becomes
`ActionNotPossible`, so the caller can give the link back and say so plainly. A rotation
that sent the new link but could not delete the old meeting is neither: it comes back as an
outcome marked "incomplete", because something did happen and the link is spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from provisioner.actions.errors import ActionNotPossible
from provisioner.actions.service import Action
from provisioner.auth.principal import Principal
from provisioner.errors import ProvisionerError
from provisioner.meetings.lifecycle import end_meeting
from provisioner.meetings.models import MeetingState
from provisioner.meetings.repository import get_meeting_for_host
from provisioner.meetings.rotate import RotationIncomplete, rotate_meeting
from provisioner.meetings.service import Provisioning
from provisioner.providers.base import MeetingProvider
from provisioner.providers.registry import pick


@dataclass(frozen=True)
class ActionOutcome:
    """Either a message to show (`done`) or a page to continue on (`redirect`)."""

    done: str | None = None
    redirect: str | None = None
    meeting_id: str | None = None
    outcome: str = "done"  # what the audit records: "done" or "incomplete"


async def carry_out(
    deps: Provisioning,
    *,
    providers: Mapping[str, MeetingProvider],
    meeting_id: str,
    action: Action,
    host: Principal,
) -> ActionOutcome:
    """Do `action` on the host's meeting.

    Raises:
        ActionNotPossible: the meeting is in a state that does not allow it, the provider
            has no API for it, or the provider failed (nothing was changed here).
        MeetingNotFound: `host` does not own the meeting (checked first, for every action).
    """
    async with deps.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=host)
        provider_name, state = meeting.provider, meeting.state
    if action is Action.ROTATE and state == MeetingState.ROTATED:
        # A rotate link from an older invitation: this meeting was replaced already, and
        # "rotating" it again would only finish that (it would not touch the live meeting,
        # whose link may be the one that leaked). Say so, and give the link back.
        raise ActionNotPossible(
            "this meeting's link was already replaced by a new meeting, sent in a newer "
            "invitation; to replace that one too, use the rotate link in the newest "
            "invitation or the meeting page"
        )
    if action is Action.REPORT:
        return ActionOutcome(
            redirect=f"/incidents/new?meeting={quote(meeting_id, safe='')}", meeting_id=meeting_id
        )
    try:
        provider = pick(providers, provider_name)
        if action is Action.END:
            await end_meeting(deps, meeting_id=meeting_id, host=host, provider=provider)
            return ActionOutcome(done="The meeting has ended for everyone.", meeting_id=meeting_id)
        return await _rotate(deps, meeting_id=meeting_id, host=host, provider=provider)
    except ActionNotPossible:
        raise
    except RotationIncomplete as exc:
        return ActionOutcome(
            done="The new link was sent privately to every invitee, but the provider did not "
            "delete the old meeting, so the old link may still work. Rotate the link again "
            "from the new meeting's page, or delete the old meeting at the provider.",
            meeting_id=exc.new_id,
            outcome="incomplete",
        )
    except ProvisionerError as exc:
        raise ActionNotPossible(exc.detail) from None


async def _rotate(
    deps: Provisioning, *, meeting_id: str, host: Principal, provider: MeetingProvider
) -> ActionOutcome:
    rotated = await rotate_meeting(
        deps,
        meeting_id=meeting_id,
        actor=host,
        provider=provider,
        reason="rotated from the host's emergency link",
    )
    new_id = _new_meeting_id(rotated)
    return ActionOutcome(
        done="The link has been rotated: the old link no longer works, and every invitee is "
        "being sent the new details privately.",
        meeting_id=new_id or meeting_id,
    )


def _new_meeting_id(rotated: Mapping[str, object]) -> str | None:
    """The replacement meeting's id from the read body `rotate_meeting` returns."""
    value = rotated.get("id")
    return value if isinstance(value, str) else None
