"""The host's security card and emergency links, in every channel, per provider.

The host's copy carries the card written for that provider's own menus, what provisioner
enforced and what it could not, and the three emergency links; an invitee's copy of the
same meeting carries none of it.
"""

from __future__ import annotations

from email.message import EmailMessage

import jinja2
import pytest

from provisioner.briefing.content import load_briefing, render_card_html
from provisioner.delivery.base import DeliveryContext, HostAction, Role
from provisioner.delivery.email import EmailChannel
from provisioner.delivery.render import default_template_dir, make_template_environment
from provisioner.delivery.slack import render_slack_message
from provisioner.delivery.teams_chat import render_teams_html
from provisioner.policy.model import Control
from provisioner.settings import EmailSettings
from tests.support import STRICT_SETTINGS, make_delivery_context

# A phrase only that provider's card has: its own name for a menu or button.
OWN_WORDS = {
    "zoom": ("End Meeting for All", "Suspend Participant Activities"),
    "teams": ("Waiting in lobby", "Make an attendee"),
    "google_meet": ("End the call for everyone", "Host controls"),
    "webex": ("Expel", "Make presenter"),
    "jitsi": ("Kick out", "Security options"),
}
ACTIONS = (
    HostAction(
        "end", "End now for everyone", "closes it", "https://prov.example.org/actions/pal.1"
    ),
    HostAction("rotate", "Rotate the link", "new link", "https://prov.example.org/actions/pal.2"),
    HostAction("report", "Report an incident", "tell us", "https://prov.example.org/actions/pal.3"),
)


@pytest.fixture(scope="module")
def templates() -> jinja2.Environment:
    return make_template_environment(default_template_dir())


def context(provider: str, role: Role) -> DeliveryContext:
    return make_delivery_context(
        provider=provider,
        role=role,
        # The worker gives links to host copies only; hand them to both here to prove the
        # channels would not show them to an invitee anyway.
        actions=ACTIONS,
        not_enforced=frozenset({Control.WAITING_ROOM}),
    )


def email(provider: str, role: Role, templates: jinja2.Environment) -> dict[str, str]:
    channel = EmailChannel(EmailSettings(sender="Meetings <m@example.org>"), templates=templates)
    message: EmailMessage = channel.build_message(context(provider, role))
    parts = {}
    for subtype in ("plain", "html"):
        part = message.get_body((subtype,))
        assert part is not None
        parts[subtype] = str(part.get_content())
    return parts


def slack(provider: str, role: Role, templates: jinja2.Environment) -> str:
    message = render_slack_message(context(provider, role), templates)
    return "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")


@pytest.mark.parametrize("provider", sorted(OWN_WORDS))
class TestHostCopy:
    def test_email_carries_this_providers_briefing(
        self, provider: str, templates: jinja2.Environment
    ) -> None:
        for body in email(provider, Role.HOST, templates).values():
            for words in OWN_WORDS[provider]:
                assert words in body
            # Enforced controls beside the steps, and the one that could not be enforced.
            assert "A passcode is needed to join." in body
            assert "could not enforce" in body
            assert "waiting room" in body

    def test_email_carries_the_three_emergency_links(
        self, provider: str, templates: jinja2.Environment
    ) -> None:
        parts = email(provider, Role.HOST, templates)
        for action in ACTIONS:
            assert f"- {action.label}: {action.url}" in parts["plain"]
            assert f'href="{action.url}"' in parts["html"]

    def test_chat_messages_carry_the_briefing_and_links(
        self, provider: str, templates: jinja2.Environment
    ) -> None:
        text = slack(provider, Role.HOST, templates)
        html = render_teams_html(context(provider, Role.HOST), templates)
        for words in OWN_WORDS[provider]:
            assert words in text
            assert words in html
        for action in ACTIONS:
            assert f"<{action.url}|{action.label}>" in text
            assert f'href="{action.url}"' in html

    def test_no_other_providers_menus(self, provider: str, templates: jinja2.Environment) -> None:
        body = email(provider, Role.HOST, templates)["plain"]
        others = {w for other, words in OWN_WORDS.items() if other != provider for w in words}
        assert not [words for words in others if words in body]


@pytest.mark.parametrize("provider", sorted(OWN_WORDS))
class TestInviteeCopy:
    def test_no_briefing_and_no_links_anywhere(
        self, provider: str, templates: jinja2.Environment
    ) -> None:
        bodies = [
            *email(provider, Role.INVITEE, templates).values(),
            slack(provider, Role.INVITEE, templates),
            render_teams_html(context(provider, Role.INVITEE), templates),
        ]
        for body in bodies:
            assert "/actions/" not in body
            assert "security card" not in body.lower()
            assert "If someone disrupts the meeting" not in body
            for words in OWN_WORDS[provider]:
                assert words not in body


class TestCardContent:
    def test_every_card_has_five_filled_steps(self, templates: jinja2.Environment) -> None:
        for provider in OWN_WORDS:
            briefing = load_briefing(templates, provider)
            assert [s.task.split()[0] for s in briefing.steps] == [
                "Let",
                "Remove",
                "Lock",
                "Stop",
                "End",
            ]
            assert all(len(step.how) > 20 for step in briefing.steps)

    def test_unknown_provider_gets_the_generic_card(self, templates: jinja2.Environment) -> None:
        for name in ("acme_meet", "../email/invitation"):
            briefing = load_briefing(templates, name)
            assert briefing.steps[0].how.startswith("Open the participant list")

    def test_page_card_is_escaped_html(self, templates: jinja2.Environment) -> None:
        card = render_card_html(
            templates, provider="teams", settings=STRICT_SETTINGS, not_enforced=()
        )
        assert "Select People" in card
        assert "<script" not in card
        assert "Your security card for Microsoft Teams" in card
