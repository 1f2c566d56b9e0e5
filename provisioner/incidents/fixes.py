"""Suggested settings fixes, derived from what the evidence shows was weak.

The guidance after an incident is "fix the security settings". A responder should not have
to work out which: a control the provider could not enforce, a read-back that contradicted
the policy, a permissive setting, or an uninvited person in the call each point at one
concrete change, with a link to where it is made (the policy admin page for defaults and
locks, the meeting page for this meeting's link).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POLICY_PAGE = "/admin/policy"

# setting in the snapshot's policy -> (value that is weak, what to do)
_WEAK_SETTINGS: dict[str, tuple[object, str]] = {
    "passcode_required": (False, "Require a passcode on every meeting and lock it."),
    "waiting_room": (False, "Turn the waiting room (lobby) on and lock it."),
    "sign_in_required": (False, "Require sign-in so anonymous guests cannot join; lock it."),
    "join_before_host": (True, "Stop people joining before the host; lock it."),
    "presenters": ("everyone", "Limit screen sharing to the host; lock it."),
    "chat": ("everyone", "Limit chat to the host (or turn it off) for sensitive meetings."),
    "per_invitee_links": (False, "Issue a personal link per invitee so leaks are traceable."),
}


@dataclass(frozen=True)
class SuggestedFix:
    """One change worth making; `code` is stable, so follow-ups can mark it applied."""

    code: str
    control: str | None
    reason: str
    action: str
    href: str


def suggest_fixes(evidence: Mapping[str, Any]) -> list[SuggestedFix]:
    """Every fix the snapshot supports, most urgent first, without duplicates."""
    meeting_page = f"/meetings/{evidence['meeting']['id']}"
    settings: Mapping[str, Any] = evidence.get("settings", {})
    participants: Mapping[str, Any] = evidence.get("participants", {})
    fixes: dict[str, SuggestedFix] = {}

    def add(fix: SuggestedFix) -> None:
        fixes.setdefault(fix.code, fix)

    unknown = [p for p in participants.get("items", ()) if p.get("unknown")]
    if unknown:
        add(
            SuggestedFix(
                code="rotate-link",
                control=None,
                reason=f"{len(unknown)} participant(s) were not on the invite list",
                action="Rotate the meeting link so the leaked one stops working.",
                href=meeting_page,
            )
        )
    anonymous = [p for p in participants.get("items", ()) if not p.get("email")]
    if anonymous:
        add(
            SuggestedFix(
                code="identify-by-sign-in",
                control="sign_in_required",
                reason=f"{len(anonymous)} participant(s) had no account the provider could "
                "name (matched by display name at best)",
                action="Require sign-in so participants are identified by account.",
                href=POLICY_PAGE,
            )
        )
    for control, description in sorted(settings.get("mismatched", {}).items()):
        add(
            SuggestedFix(
                code=f"restore-{control}",
                control=control,
                reason=f"the provider reported: {description}",
                action=f"Restore {control.replace('_', ' ')} on this meeting, then verify it.",
                href=meeting_page,
            )
        )
    for control in settings.get("not_enforced", ()):
        add(
            SuggestedFix(
                code=f"enforce-{control}",
                control=control,
                reason=f"the provider could not enforce {control.replace('_', ' ')}",
                action="Require it in the policy (enforcement: required) or use a provider "
                "that enforces it.",
                href=POLICY_PAGE,
            )
        )
    policy: Mapping[str, Any] = settings.get("policy", {})
    for name, (weak, action) in _WEAK_SETTINGS.items():
        if name in policy and policy[name] == weak:
            add(
                SuggestedFix(
                    code=f"tighten-{name}",
                    control=name,
                    reason=f"{name.replace('_', ' ')} was {_show(weak)} for this meeting",
                    action=action,
                    href=POLICY_PAGE,
                )
            )
    if settings.get("status") == "unavailable":
        add(
            SuggestedFix(
                code="check-settings-by-hand",
                control=None,
                reason=f"the settings could not be read back: {settings.get('reason', '')}",
                action="Check the meeting's security settings in the provider's console.",
                href=meeting_page,
            )
        )
    return list(fixes.values())


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
