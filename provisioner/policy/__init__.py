"""Meeting policy: the org file, its resolution per requester, and how to show it.

Org defaults, then the requester's group overrides (strictest wins), then the request,
which may tighten anything but loosen only what is unlocked.
"""

from provisioner.policy.document import (
    Enforcement,
    GroupPolicy,
    PolicyDefaults,
    PolicyDocument,
    load_policy,
    parse_policy,
)
from provisioner.policy.errors import InvalidPolicy, PolicyViolation, Violation
from provisioner.policy.model import Chat, Control, EffectivePolicy, MeetingSettings, Presenters
from provisioner.policy.render import effective_policy_as_dict, render_policy_report
from provisioner.policy.resolve import SettingsRequest, effective_for_groups, resolve_policy

__all__ = [
    "Chat",
    "Control",
    "EffectivePolicy",
    "Enforcement",
    "GroupPolicy",
    "InvalidPolicy",
    "MeetingSettings",
    "PolicyDefaults",
    "PolicyDocument",
    "PolicyViolation",
    "Presenters",
    "SettingsRequest",
    "Violation",
    "effective_for_groups",
    "effective_policy_as_dict",
    "load_policy",
    "parse_policy",
    "render_policy_report",
    "resolve_policy",
]
