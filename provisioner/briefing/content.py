"""The host's security card for one provider, read from `templates/briefing/<provider>.j2`.

Each provider's template only sets plain-text variables (the provider's own menu names);
the card templates (`briefing/card.html`, `briefing/card.txt`, the chat templates) decide
the layout. Keeping the words apart from the markup means the same reviewed sentence
reaches an email, a chat message and the meeting page, and no format can drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jinja2
from markupsafe import Markup

from provisioner.delivery.base import HostAction
from provisioner.delivery.render import describe_enforced, describe_not_enforced, provider_label
from provisioner.policy.model import Control, MeetingSettings

GENERIC = "generic"

# (task heading, template variable), in the order a host needs them under pressure.
_TASKS: tuple[tuple[str, str], ...] = (
    ("Let people in from the {waiting_area}", "admit"),
    ("Remove someone", "remove"),
    ("Lock the meeting", "lock"),
    ("Stop someone's screen share", "stop_share"),
    ("End the meeting for everyone", "end_all"),
)


@dataclass(frozen=True)
class BriefingStep:
    """One thing a host may have to do in the meeting, and how in this provider's app."""

    task: str
    how: str


@dataclass(frozen=True)
class Briefing:
    """The card for `provider`: five steps and an optional last-resort tip."""

    provider: str
    label: str
    steps: tuple[BriefingStep, ...]
    tip: str


def load_briefing(templates: jinja2.Environment, provider: str) -> Briefing:
    """The card for `provider`, or the generic card for a provider without one.

    Raises:
        jinja2.TemplateError: a briefing template is broken (a variable missing), which
            fails the message rather than sending a card with a hole in it.
    """
    try:
        template = templates.get_template(f"briefing/{_template_name(provider)}.j2")
    except jinja2.TemplateNotFound:
        template = templates.get_template(f"briefing/{GENERIC}.j2")
    module = template.make_module()
    waiting_area = _text(module, "waiting_area")
    steps = tuple(
        BriefingStep(task=task.format(waiting_area=waiting_area), how=_text(module, name))
        for task, name in _TASKS
    )
    return Briefing(
        provider=provider,
        label=provider_label(provider),
        steps=steps,
        tip=_text(module, "last_resort"),
    )


def _text(module: object, name: str) -> str:
    # A template module's exported names are only known at run time.
    return str(getattr(module, name))


def _template_name(provider: str) -> str:
    # Provider names come from configuration, but never let one walk the template tree.
    return provider if provider.replace("_", "").isalnum() else GENERIC


def render_card_html(
    templates: jinja2.Environment,
    *,
    provider: str,
    settings: MeetingSettings,
    not_enforced: Iterable[Control],
    actions: Sequence[HostAction] = (),
) -> Markup:
    """The card as the meeting page and the briefing page show it (autoescaped HTML)."""
    missing = frozenset(not_enforced)
    html = templates.get_template("briefing/card.html").render(
        provider=provider_label(provider),
        briefing=load_briefing(templates, provider),
        enforced=describe_enforced(settings, missing),
        not_enforced=describe_not_enforced(missing),
        actions=list(actions),
    )
    return Markup(html)  # noqa: S704 (rendered by an autoescaping template)
