"""Resolving the policy: defaults, then groups (strictest wins), then the request."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from provisioner.policy import (
    Chat,
    Control,
    EffectivePolicy,
    InvalidPolicy,
    PolicyDocument,
    PolicyViolation,
    Presenters,
    SettingsRequest,
    effective_for_groups,
    effective_policy_as_dict,
    load_policy,
    render_policy_report,
    resolve_policy,
)

SHIPPED_POLICY = Path(__file__).resolve().parents[3] / "config" / "policy.yaml"


def base_defaults() -> dict[str, dict[str, Any]]:
    """Every control at a middle value, unlocked, enforcement report."""
    return {
        "passcode": {"required": True, "min_length": 10},
        "waiting_room": {"value": True},
        "sign_in_required": {"value": True, "allowed_domains": ["example.com"]},
        "join_before_host": {"value": False},
        "presenters": {"value": "host_only"},
        "chat": {"value": "host_only"},
        "mute_on_entry": {"value": True},
        "per_invitee_links": {"value": True},
        "invitee_domains": {"value": ["example.com", "partner.example.org"]},
        "max_duration_minutes": {"value": 240},
    }


def make_document(
    defaults: dict[str, dict[str, Any]] | None = None,
    groups: dict[str, dict[str, Any]] | None = None,
) -> PolicyDocument:
    """A document whose defaults are `base_defaults()` with `defaults` merged per control."""
    merged = base_defaults()
    for control, keys in (defaults or {}).items():
        merged[control] = {**merged[control], **keys}
    return PolicyDocument.model_validate({"version": 1, "defaults": merged, "groups": groups or {}})


def resolve(
    document: PolicyDocument,
    *,
    groups: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    duration: int = 60,
    invitees: Sequence[str] = (),
) -> EffectivePolicy:
    request = None if settings is None else SettingsRequest.model_validate(settings)
    return resolve_policy(
        document,
        groups=groups,
        request=request,
        duration_minutes=duration,
        invitee_emails=list(invitees),
    )


def refusal(document: PolicyDocument, **kwargs: Any) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as caught:
        resolve(document, **kwargs)
    assert caught.value.code == "policy-violation"
    assert [error.field for error in caught.value.errors] == [
        violation.field for violation in caught.value.violations
    ]
    return caught.value


def as_setting(value: object) -> object:
    """A policy-file or request value as MeetingSettings holds it."""
    if value == ["*"]:
        return None
    if isinstance(value, list):
        return tuple(sorted(value))
    return value


@dataclass(frozen=True)
class Case:
    """One request field, with a looser and a stricter value for it."""

    field: str  # the SettingsRequest / MeetingSettings field
    control: Control
    key: str  # the key inside the control in policy.yaml
    loose: object
    strict: object

    def document(self, value: object, *, locked: bool) -> PolicyDocument:
        return make_document({self.control.value: {self.key: value, "locked": locked}})


CASES = [
    Case("passcode_required", Control.PASSCODE, "required", False, True),
    Case("passcode_min_length", Control.PASSCODE, "min_length", 8, 12),
    Case("waiting_room", Control.WAITING_ROOM, "value", False, True),
    Case("sign_in_required", Control.SIGN_IN_REQUIRED, "value", False, True),
    Case(
        "sign_in_domains",
        Control.SIGN_IN_REQUIRED,
        "allowed_domains",
        ["example.com", "partner.example.org"],
        ["example.com"],
    ),
    Case("sign_in_domains", Control.SIGN_IN_REQUIRED, "allowed_domains", [], ["example.com"]),
    Case("join_before_host", Control.JOIN_BEFORE_HOST, "value", True, False),
    Case("presenters", Control.PRESENTERS, "value", "everyone", "host_only"),
    Case("chat", Control.CHAT, "value", "everyone", "host_only"),
    Case("chat", Control.CHAT, "value", "host_only", "off"),
    Case("chat", Control.CHAT, "value", "everyone", "off"),
    Case("mute_on_entry", Control.MUTE_ON_ENTRY, "value", False, True),
    Case("per_invitee_links", Control.PER_INVITEE_LINKS, "value", False, True),
    Case(
        "invitee_domains",
        Control.INVITEE_DOMAINS,
        "value",
        ["example.com", "partner.example.org"],
        ["example.com"],
    ),
    Case("invitee_domains", Control.INVITEE_DOMAINS, "value", ["*"], ["partner.example.org"]),
]
CASE_IDS = [f"{case.field}:{case.loose}->{case.strict}" for case in CASES]


class TestRequestTightens:
    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_locked_control_may_be_tightened(self, case: Case) -> None:
        document = case.document(case.loose, locked=True)

        policy = resolve(document, settings={case.field: case.strict})

        assert getattr(policy.settings, case.field) == as_setting(case.strict)
        assert policy.sources[case.control] == "request"
        assert case.control in policy.locked

    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_repeating_a_locked_value_is_no_change(self, case: Case) -> None:
        document = case.document(case.strict, locked=True)

        policy = resolve(document, settings={case.field: case.strict})

        assert getattr(policy.settings, case.field) == as_setting(case.strict)
        assert policy.sources[case.control] == "defaults"


class TestRequestLoosens:
    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_locked_control_is_refused(self, case: Case) -> None:
        document = case.document(case.strict, locked=True)

        error = refusal(document, settings={case.field: case.loose})

        [violation] = error.violations
        assert violation.field == f"settings.{case.field}"
        assert violation.control is case.control

    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_unlocked_control_may_be_loosened(self, case: Case) -> None:
        document = case.document(case.strict, locked=False)

        policy = resolve(document, settings={case.field: case.loose})

        assert getattr(policy.settings, case.field) == as_setting(case.loose)
        assert policy.sources[case.control] == "request"
        assert case.control not in policy.locked

    @pytest.mark.parametrize(
        ("control", "key", "field"),
        [
            (Control.INVITEE_DOMAINS, "value", "invitee_domains"),
            (Control.SIGN_IN_REQUIRED, "allowed_domains", "sign_in_domains"),
        ],
    )
    def test_a_different_domain_is_looser(self, control: Control, key: str, field: str) -> None:
        document = make_document({control.value: {key: ["example.com"], "locked": True}})

        error = refusal(document, settings={field: ["partner.example.org"]})

        assert [v.field for v in error.violations] == [f"settings.{field}"]

    def test_no_request_keeps_the_policy(self) -> None:
        document = make_document({"chat": {"value": "off", "locked": True}})

        policy = resolve(document, settings=None)

        assert policy.settings.chat is Chat.OFF
        assert policy == effective_for_groups(document, ())


class TestGroupsStrictestWins:
    @pytest.mark.parametrize("order", [("loose", "strict"), ("strict", "loose")])
    def test_strictest_value_wins_in_either_order(self, order: tuple[str, str]) -> None:
        document = make_document(
            groups={"loose": {"chat": {"value": "everyone"}}, "strict": {"chat": {"value": "off"}}}
        )

        policy = effective_for_groups(document, order)

        assert policy.settings.chat is Chat.OFF
        assert policy.sources[Control.CHAT] == "group:strict"

    @pytest.mark.parametrize("order", [("locks", "opens"), ("opens", "locks")])
    def test_any_lock_wins_in_either_order(self, order: tuple[str, str]) -> None:
        document = make_document(
            groups={
                "locks": {"chat": {"locked": True}},
                "opens": {"chat": {"value": "host_only", "locked": False}},
            }
        )

        policy = effective_for_groups(document, order)
        error = refusal(document, groups=order, settings={"chat": "everyone"})

        assert Control.CHAT in policy.locked
        assert [v.field for v in error.violations] == ["settings.chat"]

    @pytest.mark.parametrize(
        ("control", "key", "field", "values", "expected"),
        [
            (Control.PASSCODE, "min_length", "passcode_min_length", (16, 12), 16),
            (Control.PASSCODE, "required", "passcode_required", (False, True), True),
            (Control.MAX_DURATION, "value", "max_duration_minutes", (60, 120), 60),
            (Control.JOIN_BEFORE_HOST, "value", "join_before_host", (True, False), False),
            (Control.PRESENTERS, "value", "presenters", ("everyone", "host_only"), "host_only"),
            (Control.WAITING_ROOM, "value", "waiting_room", (False, True), True),
            (
                Control.INVITEE_DOMAINS,
                "value",
                "invitee_domains",
                (None, ["a.example"]),
                ("a.example",),
            ),
            (
                Control.SIGN_IN_REQUIRED,
                "allowed_domains",
                "sign_in_domains",
                ([], ["a.example"]),
                ("a.example",),
            ),
        ],
    )
    @pytest.mark.parametrize("reverse", [False, True])
    def test_each_control_takes_the_strictest(
        self,
        control: Control,
        key: str,
        field: str,
        values: tuple[object, object],
        expected: object,
        reverse: bool,
    ) -> None:
        document = make_document(
            groups={
                "first": {control.value: {key: values[0]}},
                "second": {control.value: {key: values[1]}},
            }
        )
        groups = ["second", "first"] if reverse else ["first", "second"]

        policy = effective_for_groups(document, groups)

        assert getattr(policy.settings, field) == expected

    def test_domain_lists_meet_in_their_intersection(self) -> None:
        document = make_document(
            groups={
                "a": {"invitee_domains": {"value": ["example.com", "partner.example.org"]}},
                "b": {"invitee_domains": {"value": ["partner.example.org", "other.example"]}},
            }
        )

        policy = effective_for_groups(document, ["b", "a"])

        assert policy.settings.invitee_domains == ("partner.example.org",)
        assert policy.sources[Control.INVITEE_DOMAINS] == "group:a+group:b"

    def test_disjoint_sign_in_domains_are_a_policy_error(self) -> None:
        document = make_document(
            groups={
                "eu": {"sign_in_required": {"allowed_domains": ["eu.example.com"]}},
                "us": {"sign_in_required": {"allowed_domains": ["us.example.com"]}},
            }
        )

        with pytest.raises(InvalidPolicy):
            effective_for_groups(document, ["eu", "us"])

    def test_required_enforcement_wins(self) -> None:
        document = make_document(
            {"chat": {"enforcement": "report"}},
            groups={
                "a": {"chat": {"enforcement": "required"}},
                "b": {"chat": {"enforcement": "report"}},
            },
        )

        assert Control.CHAT in effective_for_groups(document, ["b", "a"]).must_enforce
        assert Control.CHAT not in effective_for_groups(document, ["b"]).must_enforce


class TestGroupOverridesDefaults:
    def test_group_may_loosen_a_default(self) -> None:
        document = make_document(
            {"chat": {"value": "off", "locked": True, "enforcement": "required"}},
            groups={
                "social": {"chat": {"value": "everyone", "locked": False, "enforcement": "report"}}
            },
        )

        policy = effective_for_groups(document, ["social"])

        assert policy.settings.chat is Chat.EVERYONE
        assert Control.CHAT not in policy.locked
        assert Control.CHAT not in policy.must_enforce
        assert policy.sources[Control.CHAT] == "group:social"

    def test_unnamed_keys_keep_the_default(self) -> None:
        document = make_document(
            {
                "passcode": {
                    "required": True,
                    "min_length": 10,
                    "locked": True,
                    "enforcement": "required",
                }
            },
            groups={"long": {"passcode": {"min_length": 16}}},
        )

        policy = effective_for_groups(document, ["long"])

        assert policy.settings.passcode_required is True
        assert policy.settings.passcode_min_length == 16
        assert Control.PASSCODE in policy.locked
        assert Control.PASSCODE in policy.must_enforce

    def test_a_lock_alone_keeps_the_default_value(self) -> None:
        document = make_document(groups={"strict": {"presenters": {"locked": True}}})

        policy = effective_for_groups(document, ["strict"])

        assert policy.settings.presenters is Presenters.HOST_ONLY
        assert Control.PRESENTERS in policy.locked
        assert policy.sources[Control.PRESENTERS] == "defaults"

    def test_other_groups_are_ignored(self) -> None:
        document = make_document(groups={"executives": {"chat": {"value": "off"}}})

        policy = effective_for_groups(document, ["sales", "not-in-policy"])

        assert policy.settings.chat is Chat.HOST_ONLY
        assert set(policy.sources.values()) == {"defaults"}

    def test_groups_must_not_be_a_bare_string(self) -> None:
        with pytest.raises(TypeError):
            effective_for_groups(make_document(), "executives")


class TestDuration:
    def test_within_the_maximum(self) -> None:
        policy = resolve(make_document({"max_duration_minutes": {"locked": True}}), duration=240)

        assert policy.settings.max_duration_minutes == 240
        assert policy.sources[Control.MAX_DURATION] == "defaults"

    def test_over_a_locked_maximum_is_refused(self) -> None:
        document = make_document({"max_duration_minutes": {"locked": True}})

        error = refusal(document, duration=241)

        [violation] = error.violations
        assert violation.field == "duration_minutes"
        assert violation.control is Control.MAX_DURATION

    def test_over_an_unlocked_maximum_stretches_it(self) -> None:
        policy = resolve(make_document(), duration=300)

        assert policy.settings.max_duration_minutes == 300
        assert policy.sources[Control.MAX_DURATION] == "request"

    def test_a_group_maximum_applies(self) -> None:
        document = make_document(
            groups={"short": {"max_duration_minutes": {"value": 30, "locked": True}}}
        )

        error = refusal(document, groups=["short"], duration=45)

        assert [v.field for v in error.violations] == ["duration_minutes"]


class TestInviteeDomains:
    def test_allowed_domains_pass_case_insensitively(self) -> None:
        policy = resolve(make_document(), invitees=["ana@Example.COM", "bo@partner.example.org"])

        assert policy.settings.invitee_domains == ("example.com", "partner.example.org")

    def test_each_barred_invitee_is_named_by_index(self) -> None:
        invitees = ["ana@example.com", "eve@elsewhere.example", "bo@example.com", "x@gmail.com"]

        error = refusal(make_document(), invitees=invitees)

        assert [v.field for v in error.violations] == ["invitees[1].email", "invitees[3].email"]
        assert {v.control for v in error.violations} == {Control.INVITEE_DOMAINS}

    def test_subdomain_is_not_the_domain(self) -> None:
        error = refusal(make_document(), invitees=["ana@sub.example.com"])

        assert [v.field for v in error.violations] == ["invitees[0].email"]

    def test_address_without_domain_is_barred(self) -> None:
        error = refusal(make_document(), invitees=["not-an-address"])

        assert [v.field for v in error.violations] == ["invitees[0].email"]

    def test_international_domain_matches_its_punycode(self) -> None:
        document = make_document({"invitee_domains": {"value": ["xn--mnchen-3ya.example"]}})

        resolve(document, invitees=["ana@münchen.example"])

    def test_any_domain_admits_everyone(self) -> None:
        document = make_document({"invitee_domains": {"value": None, "locked": True}})

        policy = resolve(document, invitees=["x@gmail.com"])

        assert policy.settings.invitee_domains is None

    def test_unlocked_request_may_widen_for_its_invitees(self) -> None:
        document = make_document({"invitee_domains": {"locked": False}})

        policy = resolve(document, settings={"invitee_domains": ["*"]}, invitees=["x@gmail.com"])

        assert policy.settings.invitee_domains is None

    def test_unlocked_control_does_not_widen_by_itself(self) -> None:
        document = make_document({"invitee_domains": {"locked": False}})

        error = refusal(document, invitees=["x@gmail.com"])

        assert [v.field for v in error.violations] == ["invitees[0].email"]

    def test_locked_request_cannot_widen_for_its_invitees(self) -> None:
        document = make_document({"invitee_domains": {"locked": True}})

        error = refusal(
            document, settings={"invitee_domains": ["gmail.com"]}, invitees=["x@gmail.com"]
        )

        assert [v.field for v in error.violations] == [
            "settings.invitee_domains",
            "invitees[0].email",
        ]

    def test_request_narrowing_applies_to_its_invitees(self) -> None:
        document = make_document({"invitee_domains": {"locked": True}})

        error = refusal(
            document,
            settings={"invitee_domains": ["example.com"]},
            invitees=["ana@example.com", "bo@partner.example.org"],
        )

        assert [v.field for v in error.violations] == ["invitees[1].email"]

    def test_group_opening_domains_admits_everyone(self) -> None:
        document = make_document(
            {"invitee_domains": {"locked": True}},
            groups={"external-facing": {"invitee_domains": {"value": None}}},
        )

        policy = resolve(document, groups=["external-facing"], invitees=["x@gmail.com"])

        assert Control.INVITEE_DOMAINS in policy.locked

    def test_invitees_must_not_be_a_bare_string(self) -> None:
        with pytest.raises(TypeError):
            resolve_policy(
                make_document(),
                groups=(),
                request=None,
                duration_minutes=30,
                invitee_emails="ana@example.com",
            )


class TestViolationsCollected:
    def test_every_violation_is_reported_at_once(self) -> None:
        document = make_document(
            {
                "chat": {"value": "off", "locked": True},
                "waiting_room": {"locked": True},
                "max_duration_minutes": {"locked": True},
                "invitee_domains": {"locked": True},
                "presenters": {"locked": False},
            },
            groups={"executives": {"passcode": {"min_length": 12, "locked": True}}},
        )

        error = refusal(
            document,
            groups=["executives"],
            settings={
                "chat": "everyone",
                "waiting_room": False,
                "passcode_min_length": 8,
                "presenters": "everyone",
            },
            duration=600,
            invitees=["ana@example.com", "x@gmail.com"],
        )

        assert [v.field for v in error.violations] == [
            "settings.passcode_min_length",
            "settings.waiting_room",
            "settings.chat",
            "duration_minutes",
            "invitees[1].email",
        ]
        assert len(error.errors) == len(error.violations) == 5


class TestEffectivePolicy:
    def test_locks_enforcement_and_sources_without_groups(self) -> None:
        document = make_document(
            {
                "sign_in_required": {"locked": True, "enforcement": "required"},
                "passcode": {"locked": True},
            }
        )

        policy = resolve(document)

        assert policy.locked == {Control.SIGN_IN_REQUIRED, Control.PASSCODE}
        assert policy.must_enforce == {Control.SIGN_IN_REQUIRED}
        assert policy.sources == {control: "defaults" for control in Control}

    def test_sign_in_any_account_is_an_empty_tuple(self) -> None:
        document = make_document({"sign_in_required": {"allowed_domains": []}})

        assert effective_for_groups(document, ()).settings.sign_in_domains == ()


class TestSettingsRequest:
    @pytest.mark.parametrize(
        "body",
        [
            {"chatt": "off"},
            {"chat": "loud"},
            {"passcode_min_length": 3},
            {"passcode_min_length": 65},
            {"waiting_room": "false"},
            {"invitee_domains": []},
            {"invitee_domains": ["*", "example.com"]},
            {"invitee_domains": ["ana@example.com"]},
            {"sign_in_domains": ["exa mple.com"]},
        ],
    )
    def test_bad_bodies_are_refused(self, body: dict[str, object]) -> None:
        with pytest.raises(ValidationError):
            SettingsRequest.model_validate(body)

    def test_domains_are_lower_cased(self) -> None:
        request = SettingsRequest.model_validate({"sign_in_domains": ["Example.COM"]})

        assert request.sign_in_domains == ["example.com"]

    def test_empty_request_changes_nothing(self) -> None:
        document = make_document({"chat": {"value": "off", "locked": True}})

        assert resolve(document, settings={}) == effective_for_groups(document, ())


class TestShippedPolicy:
    def test_loads_and_resolves(self) -> None:
        document = load_policy(SHIPPED_POLICY)

        default = resolve(document, invitees=["ana@example.com"])
        executive = resolve(
            document,
            groups=["executives", "external-facing"],
            settings={"presenters": "everyone"},
            invitees=["x@gmail.com"],
        )

        assert default.settings.passcode_required and default.settings.waiting_room
        assert not default.settings.join_before_host
        assert Control.SIGN_IN_REQUIRED in default.must_enforce
        assert executive.settings.chat is Chat.OFF and Control.CHAT in executive.locked
        assert executive.settings.invitee_domains is None
        assert executive.settings.presenters is Presenters.EVERYONE
        with pytest.raises(PolicyViolation):
            resolve(document, invitees=["x@gmail.com"], settings={"chat": "off"})
        with pytest.raises(PolicyViolation):
            resolve(document, groups=["executives"], settings={"chat": "host_only"})


class TestPresentation:
    def test_report_has_a_block_per_group_with_every_control(self) -> None:
        document = make_document(groups={"executives": {"chat": {"value": "off"}}, "sales": {}})

        blocks = render_policy_report(document).split("\n\n")

        assert len(blocks) == 4  # defaults, executives, sales, closing note
        assert "executives" in blocks[1] and "sales" in blocks[2]
        for block in blocks[:3]:
            assert all(control.value in block for control in Control)

    def test_dict_is_json_ready_with_every_control(self) -> None:
        document = make_document({"chat": {"locked": True, "enforcement": "required"}})

        data = effective_policy_as_dict(effective_for_groups(document, ()))

        assert json.loads(json.dumps(data)) == data
        assert set(data) == {control.value for control in Control}
        assert data["chat"] == {
            "value": "host_only",
            "locked": True,
            "enforcement": "required",
            "source": "defaults",
        }
        assert data["passcode"] == {
            "required": True,
            "min_length": 10,
            "locked": False,
            "enforcement": "report",
            "source": "defaults",
        }


def test_a_policy_file_that_is_not_utf8_is_invalid_naming_the_byte(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(b"defaults:\n  chat: caf\xe9\n")
    with pytest.raises(InvalidPolicy, match=r"file: not UTF-8 text \(byte 21\)"):
        load_policy(policy)
