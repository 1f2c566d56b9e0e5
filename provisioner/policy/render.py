"""Show an effective policy: plain text for `provisioner policy check`, JSON for the API.

Both speak the policy file's own vocabulary (control names and keys as in policy.yaml), so
IT reads the same words in the file, the CLI and `GET /api/v1/policy`.
"""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.policy.document import Enforcement, PolicyDocument
from provisioner.policy.model import Control, EffectivePolicy, MeetingSettings
from provisioner.policy.resolve import describe, effective_for_groups

_HEADER = ("control", "value", "locked", "enforcement", "source")


def _values(settings: MeetingSettings) -> dict[Control, dict[str, object]]:
    """Each control's value keys, named as in the policy file."""
    return {
        Control.PASSCODE: {
            "required": settings.passcode_required,
            "min_length": settings.passcode_min_length,
        },
        Control.WAITING_ROOM: {"value": settings.waiting_room},
        Control.SIGN_IN_REQUIRED: {
            "value": settings.sign_in_required,
            "allowed_domains": list(settings.sign_in_domains),
        },
        Control.JOIN_BEFORE_HOST: {"value": settings.join_before_host},
        Control.PRESENTERS: {"value": settings.presenters.value},
        Control.CHAT: {"value": settings.chat.value},
        Control.MUTE_ON_ENTRY: {"value": settings.mute_on_entry},
        Control.PER_INVITEE_LINKS: {"value": settings.per_invitee_links},
        Control.INVITEE_DOMAINS: {
            "value": None if settings.invitee_domains is None else list(settings.invitee_domains)
        },
        Control.MAX_DURATION: {"value": settings.max_duration_minutes},
    }


def _enforcement(policy: EffectivePolicy, control: Control) -> Enforcement:
    return Enforcement.REQUIRED if control in policy.must_enforce else Enforcement.REPORT


def effective_policy_as_dict(policy: EffectivePolicy) -> dict[str, object]:
    """The policy as JSON-ready data, one entry per control.

    Each entry holds the control's keys as in policy.yaml (`value`, or `required` and
    `min_length` for the passcode, plus `allowed_domains` for sign-in) and `locked`,
    `enforcement` and `source`. `invitee_domains.value` null means any domain;
    `allowed_domains` empty means any signed-in account.
    """
    return {
        control.value: {
            **values,
            "locked": control in policy.locked,
            "enforcement": _enforcement(policy, control).value,
            "source": policy.sources.get(control, "defaults"),
        }
        for control, values in _values(policy.settings).items()
    }


def _describe_control(control: Control, settings: MeetingSettings) -> str:
    if control is Control.PASSCODE:
        length = f"at least {settings.passcode_min_length} characters"
        return f"required, {length}" if settings.passcode_required else f"optional, {length}"
    if control is Control.SIGN_IN_REQUIRED:
        if not settings.sign_in_required:
            return "false"
        domains = settings.sign_in_domains
        return f"true, {describe(domains)}" if domains else "true, any account"
    if control is Control.MAX_DURATION:
        return f"{settings.max_duration_minutes} minutes"
    value = _values(settings)[control]["value"]
    return describe(value)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(_HEADER))]
    rule = tuple("-" * width for width in widths)
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (rows[0], rule, *rows[1:])
    ]


def _block(title: str, policy: EffectivePolicy) -> str:
    rows: list[tuple[str, ...]] = [_HEADER]
    for control in Control:
        rows.append(
            (
                control.value,
                _describe_control(control, policy.settings),
                "yes" if control in policy.locked else "no",
                _enforcement(policy, control).value,
                policy.sources.get(control, "defaults"),
            )
        )
    return "\n".join([title, *_table(rows)])


def render_policy_report(document: PolicyDocument) -> str:
    """The effective policy for the org defaults and for each group, as plain-text tables.

    Each group's block is what a member of that group alone gets; a member of several
    groups gets, per control, the strictest of their values and any lock.
    """
    defaults = effective_for_groups(document, ())
    blocks = [_block("Organisation defaults (users in no listed group)", defaults)]
    for name in sorted(document.groups):
        blocks.append(_block(f"Group {name}", effective_for_groups(document, (name,))))
    note = "A member of several groups gets, per control, the strictest value and any lock."
    return "\n\n".join([*blocks, note]) + "\n"
