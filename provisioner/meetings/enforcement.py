"""Which controls a meeting relies on, and which of those its provider cannot enforce.

A control only needs enforcing when the effective setting restricts something: chat set
to "everyone" asks nothing of the provider, chat "off" does. Comparing that set with the
provider's declared capabilities gives the controls to refuse (policy says
`enforcement: required`) or to report as not enforced -- never to drop silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.policy.model import Chat, Control, EffectivePolicy, MeetingSettings, Presenters


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


def plan_enforcement(policy: EffectivePolicy, capabilities: frozenset[Control]
                     ) -> EnforcementPlan:
    wanted = restrictive_controls(policy.settings)
    missing = wanted - capabilities
    return EnforcementPlan(
        wanted=wanted,
        unenforceable_required=missing & policy.must_enforce,
        not_enforced=missing,
    )
