"""Which controls a meeting relies on, and which of those its provider cannot enforce.

A control only needs enforcing when the effective setting restricts something: chat set
to "everyone" asks nothing of the provider, chat "off" does. Comparing that set with the
provider's declared capabilities gives the controls to refuse (policy says
`enforcement: required`) or to report as not enforced -- never to drop silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.errors import FieldError
from provisioner.meetings.errors import ControlNotEnforceable, VerificationFailed
from provisioner.policy.model import Chat, Control, EffectivePolicy, MeetingSettings, Presenters
from provisioner.providers.base import ObservedSettings, ProvisionedMeeting


def restrictive_controls(settings: MeetingSettings) -> frozenset[Control]:
    active = {Control.MAX_DURATION}
    if settings.passcode_required:
        active.add(Control.PASSCODE)
    if settings.waiting_room:
        active.add(Control.WAITING_ROOM)
    if settings.sign_in_required:
        active.add(Control.SIGN_IN_REQUIRED)
    if not settings.join_before_host:
        active.add(Control.JOIN_BEFORE_HOST)
    if settings.presenters is Presenters.HOST_ONLY:
        active.add(Control.PRESENTERS)
    if settings.chat is not Chat.EVERYONE:
        active.add(Control.CHAT)
    if settings.mute_on_entry:
        active.add(Control.MUTE_ON_ENTRY)
    if settings.per_invitee_links:
        active.add(Control.PER_INVITEE_LINKS)
    if settings.invitee_domains is not None:
        active.add(Control.INVITEE_DOMAINS)
    return frozenset(active)


@dataclass(frozen=True)
class EnforcementPlan:
    """`unenforceable_required` must be empty for the request to go ahead."""

    wanted: frozenset[Control]
    unenforceable_required: frozenset[Control]
    not_enforced: frozenset[Control]


def plan_enforcement(policy: EffectivePolicy, capabilities: frozenset[Control]) -> EnforcementPlan:
    wanted = restrictive_controls(policy.settings)
    missing = wanted - capabilities
    return EnforcementPlan(
        wanted=wanted,
        unenforceable_required=missing & policy.must_enforce,
        not_enforced=missing,
    )


def confirmed_enforcement(
    wanted: frozenset[Control],
    created: ProvisionedMeeting,
    observed: ObservedSettings,
    *,
    meeting_id: str,
    must_enforce: frozenset[Control] = frozenset(),
) -> tuple[frozenset[Control], frozenset[Control]]:
    """(enforced, not_enforced) after the read-back; a contradiction is an error.

    A control counts as enforced only if the provider claimed to apply it AND the read-back
    confirmed it. If the read-back contradicts a control the provider claimed, the meeting
    is not what the policy demands, and `VerificationFailed` is raised. A control the policy
    requires that ended up not enforced (a provider whose enforcement depends on account
    settings, like Zoom's chat) is refused with `ControlNotEnforceable`: the static
    capability check before the call cannot see that.

    Raises:
        ControlNotEnforceable: a required control is not enforced for this meeting.
        VerificationFailed: the read-back contradicted a claimed control.
    """
    claimed = created.enforced & wanted
    contradicted = {
        control: what for control, what in observed.mismatched.items() if control in claimed
    }
    if contradicted:
        raise VerificationFailed(
            "the provider's read-back contradicted: "
            + ", ".join(f"{c} ({w})" for c, w in sorted(contradicted.items())),
            meeting_id=meeting_id,
        )
    enforced = claimed & observed.confirmed
    missing = (wanted - enforced) & must_enforce
    if missing:
        names = sorted(missing)
        raise ControlNotEnforceable(
            f"the provider did not enforce {', '.join(names)}, which the policy requires",
            errors=tuple(FieldError("provider", f"cannot enforce {name}") for name in names),
        )
    return enforced, wanted - enforced
