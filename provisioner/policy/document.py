"""The policy file IT writes, validated strictly before anything is resolved from it.

A policy is security configuration, so a mistake must fail loudly rather than quietly leave
a weaker default in place: every model forbids unknown keys (a typo such as `chatt:` would
otherwise be ignored), booleans and integers are strict (`"yes"` or `1` are not `true`),
duplicate YAML keys are refused (the last one would silently win), and group overrides may
not set a key to null unless null means something (only `invitee_domains.value`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeAlias, cast

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from provisioner.errors import FieldError
from provisioner.policy.errors import InvalidPolicy
from provisioner.policy.model import Chat, Control, Presenters

ANY_DOMAIN = "*"

# Labels of 1-63 letters, digits or inner hyphens, at least two of them; no "@", no spaces.
_DOMAIN = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


class Enforcement(StrEnum):
    """What happens when the chosen provider cannot enforce a control."""

    REQUIRED = "required"  # refuse the request
    REPORT = "report"  # create the meeting and report the control as not enforced


def domain_name(value: str) -> str:
    """`value` lower-cased, or ValueError if it does not look like a domain name."""
    domain = value.lower()
    if _DOMAIN.fullmatch(domain) is None:
        raise ValueError(f"{value!r} is not a domain name such as example.com")
    return domain


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _any_domain(value: object) -> object:
    """Read `["*"]` as null: both mean that any domain may be invited."""
    if isinstance(value, list | tuple) and ANY_DOMAIN in value:
        if len(value) != 1:
            raise ValueError(f"{ANY_DOMAIN!r} means any domain and must be the only entry")
        return None
    return value


def _some_domain(values: tuple[str, ...]) -> tuple[str, ...]:
    # An empty list would admit no invitee at all, which is never what IT means.
    if not values:
        raise ValueError(f"list at least one domain, or use null or [{ANY_DOMAIN!r}] for any")
    return _unique(values)


def _off_from_yaml(value: object) -> object:
    # YAML 1.1 reads a bare `off` as false; accept it as the chat value it was meant to be.
    return Chat.OFF if value is False else value


Domain = Annotated[str, StringConstraints(strict=True), AfterValidator(domain_name)]
SignInDomains: TypeAlias = Annotated[tuple[Domain, ...], AfterValidator(_unique)]
InviteeDomains: TypeAlias = Annotated[
    Annotated[tuple[Domain, ...], AfterValidator(_some_domain)] | None,
    BeforeValidator(_any_domain),
]
PasscodeLength = Annotated[StrictInt, Field(ge=4, le=64)]
DurationMinutes = Annotated[StrictInt, Field(ge=1, le=1440)]
ChatValue = Annotated[Chat, BeforeValidator(_off_from_yaml)]
GroupName = Annotated[str, StringConstraints(strict=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControlSetting(_Model):
    """An org default for one control: its value plus whether and how it binds."""

    locked: StrictBool = False
    enforcement: Enforcement = Enforcement.REPORT


class PasscodeSetting(ControlSetting):
    required: StrictBool
    min_length: PasscodeLength


class SwitchSetting(ControlSetting):
    value: StrictBool


class SignInSetting(ControlSetting):
    """`allowed_domains` empty means any signed-in account is accepted."""

    value: StrictBool
    allowed_domains: SignInDomains = ()


class PresentersSetting(ControlSetting):
    value: Presenters


class ChatSetting(ControlSetting):
    value: ChatValue


class InviteeDomainsSetting(ControlSetting):
    """`value` null (or `["*"]`) means any domain may be invited; the key is still required."""

    value: InviteeDomains


class DurationSetting(ControlSetting):
    value: DurationMinutes


class _Partial(_Model):
    """A model whose keys may each be left out; explicit nulls are refused unless listed."""

    nullable_keys: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: object, info: ValidationInfo) -> object:
        # Without this, `locked: null` would read as "not set" and keep the default silently.
        if value is None and info.field_name not in cls.nullable_keys:
            raise ValueError("may not be null; leave the key out to keep the org default")
        return value


class ControlOverride(_Partial):
    """A group's partial setting: only the keys it names replace the org default's."""

    locked: StrictBool | None = None
    enforcement: Enforcement | None = None


class PasscodeOverride(ControlOverride):
    required: StrictBool | None = None
    min_length: PasscodeLength | None = None


class SwitchOverride(ControlOverride):
    value: StrictBool | None = None


class SignInOverride(ControlOverride):
    value: StrictBool | None = None
    allowed_domains: SignInDomains | None = None


class PresentersOverride(ControlOverride):
    value: Presenters | None = None


class ChatOverride(ControlOverride):
    value: ChatValue | None = None


class InviteeDomainsOverride(ControlOverride):
    """Null is a real value here (any domain); `sets_value` tells it apart from absence."""

    nullable_keys: ClassVar[frozenset[str]] = frozenset({"value"})

    value: InviteeDomains = None

    @property
    def sets_value(self) -> bool:
        return "value" in self.model_fields_set


class DurationOverride(ControlOverride):
    value: DurationMinutes | None = None


class PolicyDefaults(_Model):
    """The org defaults; every control must appear so nothing depends on a code default."""

    passcode: PasscodeSetting
    waiting_room: SwitchSetting
    sign_in_required: SignInSetting
    join_before_host: SwitchSetting
    presenters: PresentersSetting
    chat: ChatSetting
    mute_on_entry: SwitchSetting
    per_invitee_links: SwitchSetting
    invitee_domains: InviteeDomainsSetting
    max_duration_minutes: DurationSetting

    def setting(self, control: Control) -> ControlSetting:
        """The default for `control` (field names are the `Control` values)."""
        return cast(ControlSetting, getattr(self, control.value))


class GroupPolicy(_Partial):
    """Overrides for members of one group; any control may be left out."""

    passcode: PasscodeOverride | None = None
    waiting_room: SwitchOverride | None = None
    sign_in_required: SignInOverride | None = None
    join_before_host: SwitchOverride | None = None
    presenters: PresentersOverride | None = None
    chat: ChatOverride | None = None
    mute_on_entry: SwitchOverride | None = None
    per_invitee_links: SwitchOverride | None = None
    invitee_domains: InviteeDomainsOverride | None = None
    max_duration_minutes: DurationOverride | None = None

    def override(self, control: Control) -> ControlOverride | None:
        """This group's override for `control`, if it has one."""
        return cast(ControlOverride | None, getattr(self, control.value))


class BriefingAcknowledgementMode(StrEnum):
    """Whether hosts must acknowledge a provider's security briefing before hosting on it."""

    OFF = "off"
    REQUIRED = "required"


def _off_mode_from_yaml(value: object) -> object:
    # YAML 1.1 reads a bare `off` as false, as for chat.
    return BriefingAcknowledgementMode.OFF if value is False else value


class PolicyDocument(_Model):
    """The whole policy file; `groups` is keyed by the value of the user's groups claim."""

    version: Literal[1]
    defaults: PolicyDefaults
    groups: dict[GroupName, GroupPolicy] = Field(default_factory=dict)
    # Org-wide, not per group: a briefing is about the provider, not the meeting.
    briefing_acknowledgement: Annotated[
        BriefingAcknowledgementMode, BeforeValidator(_off_mode_from_yaml)
    ] = BriefingAcknowledgementMode.OFF


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which plain YAML resolves to the last one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> object:
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key_node.value!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _yaml_error(error: yaml.YAMLError) -> FieldError:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return FieldError(where, error.problem or "invalid YAML")
    return FieldError("(document)", "invalid YAML")


def _field_errors(error: ValidationError) -> list[FieldError]:
    found: list[FieldError] = []
    for detail in error.errors(include_url=False):
        loc = detail["loc"]
        path = ".".join(str(part) for part in loc if part != "[key]") or "(document)"
        if loc and loc[-1] == "[key]":
            reason = f"key must be text (quote it), not {detail['input']!r}"
        elif detail["type"] == "extra_forbidden":
            reason = "unknown key"
        elif detail["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = detail["msg"].removeprefix("Value error, ")
        found.append(FieldError(path, reason))
    return found


def parse_policy(text: str, *, source: str) -> PolicyDocument:
    """Parse and validate a policy document.

    Args:
        text: the YAML text.
        source: where it came from (a path), used only in error messages.

    Returns:
        The validated document.

    Raises:
        InvalidPolicy: the YAML is malformed or breaks the schema; `errors` names every
            bad key path (`groups.sales.chatt`) with its reason.
    """
    try:
        # A SafeLoader subclass: no arbitrary objects, and duplicate keys are refused.
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as error:
        raise InvalidPolicy(source=source, errors=[_yaml_error(error)]) from None
    if not isinstance(data, dict):
        reason = "the policy must be a mapping with version, defaults and groups"
        raise InvalidPolicy(source=source, errors=[FieldError("(document)", reason)])
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as error:
        raise InvalidPolicy(source=source, errors=_field_errors(error)) from None


def load_policy(path: Path) -> PolicyDocument:
    """Read and validate the policy file at `path`.

    Raises:
        InvalidPolicy: as for `parse_policy`, or the file is not UTF-8 text.
        OSError: the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start})"
        raise InvalidPolicy(source=str(path), errors=(FieldError("file", reason),)) from None
    return parse_policy(text, source=str(path))
