"""Which controls a meeting relies on and which its provider cannot enforce."""

from __future__ import annotations

from dataclasses import replace

from provisioner.meetings.enforcement import plan_enforcement, restrictive_controls
from provisioner.policy.model import Chat, Control, EffectivePolicy, MeetingSettings, Presenters

STRICT = MeetingSettings(
    passcode_required=True,
    passcode_min_length=10,
    waiting_room=True,
    sign_in_required=True,
    sign_in_domains=("example.com",),
    join_before_host=False,
    presenters=Presenters.HOST_ONLY,
    chat=Chat.OFF,
    mute_on_entry=True,
    per_invitee_links=True,
    invitee_domains=("example.com",),
    max_duration_minutes=60,
)


class TestRestrictiveControls:
    def test_strict_settings_rely_on_every_control(self) -> None:
        assert restrictive_controls(STRICT) == frozenset(Control)

    def test_open_settings_rely_only_on_the_duration_cap(self) -> None:
        open_ = replace(
            STRICT,
            passcode_required=False,
            waiting_room=False,
            sign_in_required=False,
            join_before_host=True,
            presenters=Presenters.EVERYONE,
            chat=Chat.EVERYONE,
            mute_on_entry=False,
            per_invitee_links=False,
            invitee_domains=None,
        )
        assert restrictive_controls(open_) == {Control.MAX_DURATION}


class TestPlanEnforcement:
    def test_required_but_unenforceable_controls_are_refused_others_reported(self) -> None:
        policy = EffectivePolicy(
            settings=STRICT,
            locked=frozenset(),
            must_enforce=frozenset({Control.SIGN_IN_REQUIRED, Control.CHAT}),
        )
        plan = plan_enforcement(policy, frozenset({Control.SIGN_IN_REQUIRED, Control.MAX_DURATION}))
        assert plan.unenforceable_required == {Control.CHAT}
        assert Control.WAITING_ROOM in plan.not_enforced
        assert Control.SIGN_IN_REQUIRED not in plan.not_enforced
