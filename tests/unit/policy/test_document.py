"""Parsing the policy file: every mistake names its key path and nothing is silently ignored."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from provisioner.policy import (
    Chat,
    Control,
    Enforcement,
    InvalidPolicy,
    PolicyDefaults,
    PolicyDocument,
    parse_policy,
)

BASE: dict[str, Any] = {
    "version": 1,
    "defaults": {
        "passcode": {"required": True, "min_length": 10, "locked": True, "enforcement": "report"},
        "waiting_room": {"value": True, "locked": True},
        "sign_in_required": {
            "value": True,
            "allowed_domains": ["example.com"],
            "locked": True,
            "enforcement": "required",
        },
        "join_before_host": {"value": False, "locked": True},
        "presenters": {"value": "host_only", "locked": False},
        "chat": {"value": "host_only", "locked": False},
        "mute_on_entry": {"value": True, "locked": False},
        "per_invitee_links": {"value": True, "locked": True},
        "invitee_domains": {"value": ["example.com", "partner.example.org"], "locked": True},
        "max_duration_minutes": {"value": 240, "locked": True},
    },
    "groups": {
        "external-facing": {"invitee_domains": {"value": None}},
        "executives": {"chat": {"value": "off", "locked": True}},
    },
}


DELETE = object()


def policy_text(*changes: tuple[str, object]) -> str:
    """BASE as YAML with each (dotted path, value) applied; a value of DELETE drops the key."""
    data = copy.deepcopy(BASE)
    for path, value in changes:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def error_fields(text: str) -> list[str]:
    with pytest.raises(InvalidPolicy) as caught:
        parse_policy(text, source="test")
    assert caught.value.code == "invalid-policy"
    return [error.field for error in caught.value.errors]


class TestValidDocument:
    def test_base_parses(self) -> None:
        document = parse_policy(policy_text(), source="test")

        assert document.defaults.chat.value is Chat.HOST_ONLY
        assert document.defaults.sign_in_required.enforcement is Enforcement.REQUIRED
        assert document.defaults.waiting_room.enforcement is Enforcement.REPORT
        assert set(document.groups) == {"external-facing", "executives"}

    def test_defaults_name_every_control(self) -> None:
        assert set(PolicyDefaults.model_fields) == {control.value for control in Control}

    def test_locked_and_enforcement_have_defaults(self) -> None:
        document = parse_policy(policy_text(("defaults.chat", {"value": "off"})), source="t")

        assert document.defaults.chat.locked is False
        assert document.defaults.chat.enforcement is Enforcement.REPORT

    def test_domains_are_lower_cased_and_deduplicated(self) -> None:
        domains = ["Example.COM", "example.com", "Partner.Example.org"]
        text = policy_text(("defaults.invitee_domains.value", domains))

        document = parse_policy(text, source="t")

        assert document.defaults.invitee_domains.value == ("example.com", "partner.example.org")

    @pytest.mark.parametrize("value", [None, ["*"]])
    def test_null_or_star_means_any_invitee_domain(self, value: object) -> None:
        document = parse_policy(policy_text(("defaults.invitee_domains.value", value)), source="t")

        assert document.defaults.invitee_domains.value is None

    def test_empty_sign_in_domains_means_any_account(self) -> None:
        text = policy_text(("defaults.sign_in_required.allowed_domains", []))

        document = parse_policy(text, source="t")

        assert document.defaults.sign_in_required.allowed_domains == ()

    def test_bare_yaml_off_reads_as_chat_off(self) -> None:
        # YAML 1.1 reads an unquoted `off` as false.
        text = policy_text(("defaults.chat.value", "BARE")).replace("BARE", "off")

        document = parse_policy(text, source="t")

        assert document.defaults.chat.value is Chat.OFF

    def test_groups_may_be_left_out(self) -> None:
        document = parse_policy(policy_text(("groups", DELETE)), source="t")

        assert document.groups == {}

    def test_group_override_records_only_named_keys(self) -> None:
        document = parse_policy(policy_text(), source="t")

        external = document.groups["external-facing"].invitee_domains
        executives = document.groups["executives"].chat
        assert external is not None and external.sets_value and external.value is None
        assert external.locked is None and external.enforcement is None
        assert executives is not None and executives.value is Chat.OFF
        assert document.groups["executives"].invitee_domains is None

    def test_group_lock_without_value_does_not_set_invitee_domains(self) -> None:
        text = policy_text(("groups.sales", {"invitee_domains": {"locked": True}}))

        override = parse_policy(text, source="t").groups["sales"].invitee_domains

        assert override is not None and not override.sets_value

    def test_document_is_frozen(self) -> None:
        document = parse_policy(policy_text(), source="t")

        with pytest.raises(ValueError):
            document.defaults.chat.locked = True  # type: ignore[misc]


class TestUnknownKeys:
    @pytest.mark.parametrize(
        ("path", "field"),
        [
            ("groups.sales.chatt", "groups.sales.chatt"),
            ("defaults.chat.colour", "defaults.chat.colour"),
            ("groups.executives.chat.lockd", "groups.executives.chat.lockd"),
            ("owner", "owner"),
            ("defaults.recording", "defaults.recording"),
        ],
    )
    def test_unknown_key_names_its_path(self, path: str, field: str) -> None:
        assert error_fields(policy_text((path, {"value": "off"}))) == [field]


class TestInvalidValues:
    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("version", 2),
            ("defaults.chat.value", "loud"),
            ("defaults.presenters.value", "all"),
            ("defaults.passcode.enforcement", "maybe"),
            ("defaults.passcode.min_length", 3),
            ("defaults.passcode.min_length", 65),
            ("defaults.passcode.min_length", "10"),
            ("defaults.passcode.required", "yes"),
            ("defaults.waiting_room.value", 1),
            ("defaults.waiting_room.locked", "true"),
            ("defaults.max_duration_minutes.value", 0),
            ("defaults.max_duration_minutes.value", 1441),
            ("defaults.invitee_domains.value", []),
            ("defaults.invitee_domains.value", ["*", "example.com"]),
            ("defaults.invitee_domains.value", "example.com"),
            ("groups.executives.chat.value", "loud"),
            ("groups.executives.passcode", {"min_length": 2}),
        ],
    )
    def test_bad_value_names_its_path(self, path: str, value: object) -> None:
        fields = error_fields(policy_text((path, value)))

        assert len(fields) == 1
        assert fields[0] == path or fields[0].startswith(path + ".")

    @pytest.mark.parametrize("domain", ["ana@example.com", "exa mple.com", "localhost", "*", ""])
    def test_domain_must_look_like_a_domain(self, domain: str) -> None:
        text = policy_text(("defaults.sign_in_required.allowed_domains", [domain]))

        assert error_fields(text) == ["defaults.sign_in_required.allowed_domains.0"]

    def test_invalid_invitee_domain_names_its_index(self) -> None:
        text = policy_text(("defaults.invitee_domains.value", ["example.com", "a@b.com"]))

        assert error_fields(text) == ["defaults.invitee_domains.value.1"]

    def test_group_name_must_be_text(self) -> None:
        text = policy_text() + "  123:\n    chat: {value: everyone}\n"

        assert error_fields(text) == ["groups.123"]


class TestMissingKeys:
    @pytest.mark.parametrize(
        "path",
        [
            "version",
            "defaults",
            "defaults.chat",
            "defaults.max_duration_minutes",
            "defaults.passcode.min_length",
            "defaults.invitee_domains.value",
        ],
    )
    def test_missing_key_names_its_path(self, path: str) -> None:
        assert error_fields(policy_text((path, DELETE))) == [path]


class TestNulls:
    @pytest.mark.parametrize(
        "path",
        [
            "groups.executives.chat.locked",
            "groups.executives.chat.value",
            "groups.executives.chat.enforcement",
            "groups.executives.waiting_room",
        ],
    )
    def test_null_in_a_group_is_refused(self, path: str) -> None:
        assert error_fields(policy_text((path, None))) == [path]

    def test_null_default_is_refused(self) -> None:
        assert error_fields(policy_text(("defaults.chat.locked", None))) == ["defaults.chat.locked"]


class TestEveryProblemReported:
    def test_all_bad_keys_are_listed(self) -> None:
        text = policy_text(
            ("defaults.chat.value", "loud"),
            ("groups.sales.chatt", {"value": "off"}),
            ("defaults.max_duration_minutes.value", 0),
        )

        assert sorted(error_fields(text)) == [
            "defaults.chat.value",
            "defaults.max_duration_minutes.value",
            "groups.sales.chatt",
        ]


class TestYamlProblems:
    def test_duplicate_key_is_refused(self) -> None:
        text = policy_text().replace("version: 1\n", "version: 1\nversion: 1\n")

        assert len(error_fields(text)) == 1

    def test_duplicate_nested_key_is_refused(self) -> None:
        text = "version: 1\ndefaults:\n  chat: {value: 'off', locked: true, locked: false}\n"

        assert len(error_fields(text)) == 1

    def test_yaml_anchors_and_merge_keys_still_work(self) -> None:
        base = policy_text(("groups", DELETE))
        text = base + (
            "groups:\n"
            "  a: &strict\n    chat: {value: 'off', locked: true}\n"
            "  b:\n    <<: *strict\n    mute_on_entry: {value: true}\n"
        )

        document = parse_policy(text, source="t")

        chat = document.groups["b"].chat
        assert chat is not None and chat.value is Chat.OFF

    def test_syntax_error(self) -> None:
        assert len(error_fields("version: [1\n")) == 1

    @pytest.mark.parametrize("text", ["", "- version: 1\n", "just text\n"])
    def test_top_level_must_be_a_mapping(self, text: str) -> None:
        assert error_fields(text) == ["(document)"]

    def test_python_objects_are_not_constructed(self) -> None:
        text = "version: !!python/object/apply:os.system ['true']\n"

        assert len(error_fields(text)) == 1


class TestInvalidPolicyError:
    def test_carries_source(self) -> None:
        with pytest.raises(InvalidPolicy) as caught:
            parse_policy("version: 2\n", source="config/policy.yaml")

        assert caught.value.source == "config/policy.yaml"
        assert {error.field for error in caught.value.errors} == {"version", "defaults"}

    def test_is_built_from_model_validation_too(self) -> None:
        # The resolver tests build documents with model_validate; parse_policy agrees.
        document = parse_policy(policy_text(), source="t")

        assert document == PolicyDocument.model_validate(BASE)
