"""Rendering of chat messages: escaping, host versus invitee content, cancellations."""

from __future__ import annotations

import json

import jinja2
import pytest

from provisioner.delivery.base import ChannelRejected, Method, Role
from provisioner.delivery.render import default_template_dir, make_template_environment
from provisioner.delivery.slack import (
    escape_mrkdwn,
    fallback_text,
    mrkdwn_url,
    render_slack_message,
)
from provisioner.delivery.teams_chat import chat_body, odata_user, render_teams_html
from provisioner.providers.base import JoinDetails, Person
from tests.support import make_delivery_context

HOSTILE_TOPIC = "<script>alert(1)</script> & <!channel> <@U0BOSS> <https://evil.example|Bank>"


@pytest.fixture(scope="module")
def templates() -> jinja2.Environment:
    return make_template_environment(default_template_dir())


def slack_text(templates: jinja2.Environment, **overrides: object) -> str:
    message = render_slack_message(make_delivery_context(**overrides), templates)
    return "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")


class TestSlackEscaping:
    def test_control_characters_are_escaped(self) -> None:
        assert escape_mrkdwn("a & <b> <!here>") == "a &amp; &lt;b&gt; &lt;!here&gt;"

    def test_line_breaks_are_flattened(self) -> None:
        assert escape_mrkdwn("one\ntwo\r\n*three*") == "one two *three*"

    def test_hostile_topic_cannot_mention_link_or_script(
        self, templates: jinja2.Environment
    ) -> None:
        message = render_slack_message(make_delivery_context(topic=HOSTILE_TOPIC), templates)
        rendered = json.dumps([message.text, message.blocks])
        for raw in ("<script>", "<!channel>", "<@U0BOSS>", "<https://evil.example"):
            assert raw not in rendered
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;!channel&gt;" in rendered

    def test_hostile_names_are_escaped(self, templates: jinja2.Environment) -> None:
        text = slack_text(
            templates, organizer=Person(email="h@example.org", name="<!everyone> Boss")
        )
        assert text.startswith("&lt;!everyone&gt; Boss invited you")

    def test_join_url_cannot_break_out_of_the_link(self) -> None:
        url = "https://meet.example.org/r?a=1&b=2|x>y"
        assert mrkdwn_url(url) == "https://meet.example.org/r?a=1&amp;b=2%7Cx%3Ey"

    @pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "ftp://x"])
    def test_non_web_links_are_refused(self, url: str) -> None:
        with pytest.raises(ChannelRejected):
            mrkdwn_url(url)

    def test_notification_text_has_neither_link_nor_passcode(self) -> None:
        text = fallback_text(make_delivery_context())
        assert text == "Invitation: Quarterly review"


class TestSlackContent:
    def test_invitee_gets_link_passcode_and_notices_but_no_summary(
        self, templates: jinja2.Environment
    ) -> None:
        text = slack_text(templates)
        assert "<https://meet.example.org/room-7f3a?jwt=secret-token|Join the meeting>" in text
        assert "`831-552-09`" in text
        assert "This link is yours alone" in text
        assert "Never post this link publicly." in text
        assert "Security settings" not in text
        assert "could not enforce" not in text
        assert "host link" not in text

    def test_host_gets_the_security_summary(self, templates: jinja2.Environment) -> None:
        text = slack_text(templates, role=Role.HOST)
        assert "This is your host link" in text
        assert "*Security settings Jitsi applies:*" in text
        assert "• A passcode is needed to join." in text
        assert "*Jitsi could not enforce:*" in text
        assert "• *waiting room* – turn it on" in text
        # A control that was not enforced is never listed as applied.
        assert "waiting room until admitted" not in text

    def test_shared_link_has_no_personal_notice(self, templates: jinja2.Environment) -> None:
        text = slack_text(templates, personal=False)
        assert "yours alone" not in text
        assert "Never post this link publicly." in text

    def test_cancellation_hides_the_link(self, templates: jinja2.Environment) -> None:
        message = render_slack_message(make_delivery_context(method=Method.CANCEL), templates)
        rendered = json.dumps([message.text, message.blocks])
        assert "meet.example.org" not in rendered
        assert "831-552-09" not in rendered
        assert "Hana Host cancelled this meeting." in rendered
        assert message.text == "Cancelled: Quarterly review"

    def test_uninvited_invitee_is_told_their_invitation_was_withdrawn(
        self, templates: jinja2.Environment
    ) -> None:
        context = make_delivery_context(method=Method.CANCEL, uninvited=True)

        message = render_slack_message(context, templates)

        rendered = json.dumps([message.text, message.blocks])
        assert message.text == "Invitation withdrawn: Quarterly review"
        assert "Hana Host withdrew your invitation to this meeting." in rendered
        assert "cancelled" not in rendered
        assert "meet.example.org" not in rendered

    def test_cancellation_tolerates_a_bad_link(self, templates: jinja2.Environment) -> None:
        context = make_delivery_context(method=Method.CANCEL, join=JoinDetails(url=""))
        assert render_slack_message(context, templates).blocks

    def test_no_passcode_line_without_a_passcode(self, templates: jinja2.Environment) -> None:
        text = slack_text(templates, join=JoinDetails(url="https://meet.example.org/x"))
        assert "Passcode" not in text

    def test_very_long_topic_is_capped(self, templates: jinja2.Environment) -> None:
        message = render_slack_message(make_delivery_context(topic="x" * 5000), templates)
        assert all(len(b["text"]["text"]) <= 3000 for b in message.blocks if "text" in b)


class TestTeamsHtml:
    def test_hostile_topic_and_names_are_autoescaped(self, templates: jinja2.Environment) -> None:
        html = render_teams_html(
            make_delivery_context(
                topic="<script>alert(1)</script>",
                organizer=Person(email="h@example.org", name='<img src=x onerror="x()">'),
            ),
            templates,
        )
        assert "<script>" not in html
        assert "<img" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_link_ampersands_are_escaped_in_the_attribute(
        self, templates: jinja2.Environment
    ) -> None:
        context = make_delivery_context(join=JoinDetails(url="https://m.example.org/r?a=1&b=2"))
        assert 'href="https://m.example.org/r?a=1&amp;b=2"' in render_teams_html(context, templates)

    def test_invitee_has_no_summary_host_does(self, templates: jinja2.Environment) -> None:
        invitee = render_teams_html(make_delivery_context(), templates)
        host = render_teams_html(make_delivery_context(role=Role.HOST), templates)
        assert "Security settings" not in invitee
        assert "could not enforce" not in invitee
        assert "Security settings Jitsi applies" in host
        assert "<strong>waiting room</strong>" in host
        for html in (invitee, host):
            assert "Never post this link publicly." in html
            assert "This link is yours alone" in html

    def test_cancellation_hides_the_link(self, templates: jinja2.Environment) -> None:
        html = render_teams_html(make_delivery_context(method=Method.CANCEL), templates)
        assert "href" not in html
        assert "831-552-09" not in html

    def test_uninvited_invitee_is_told_their_invitation_was_withdrawn(
        self, templates: jinja2.Environment
    ) -> None:
        context = make_delivery_context(method=Method.CANCEL, uninvited=True)

        html = render_teams_html(context, templates)

        assert "<p>Hana Host withdrew your invitation to this meeting." in html
        assert "cancelled" not in html
        assert "href" not in html

    def test_javascript_link_is_refused(self, templates: jinja2.Environment) -> None:
        with pytest.raises(ChannelRejected):
            render_teams_html(
                make_delivery_context(join=JoinDetails(url="javascript:alert(1)")), templates
            )


class TestTeamsMembers:
    def test_odata_key_quotes_are_doubled(self) -> None:
        assert (
            odata_user("https://graph.microsoft.com/v1.0", "o'brien@example.org")
            == "https://graph.microsoft.com/v1.0/users('o''brien@example.org')"
        )

    def test_chat_has_exactly_sender_and_recipient(self) -> None:
        from provisioner.delivery.chat_config import TeamsChatConfig

        config = TeamsChatConfig(
            tenant_id="contoso.onmicrosoft.com",
            client_id="c",
            client_secret="s",
            sender_user_id="bot@contoso.onmicrosoft.com",
        )
        body = chat_body(config, "ivan@example.org")
        assert body["chatType"] == "oneOnOne"
        assert [m["user@odata.bind"] for m in body["members"]] == [
            "https://graph.microsoft.com/v1.0/users('bot@contoso.onmicrosoft.com')",
            "https://graph.microsoft.com/v1.0/users('ivan@example.org')",
        ]


class TestChatConfig:
    def test_there_is_no_destination_setting(self) -> None:
        from pydantic import ValidationError

        from provisioner.delivery.chat_config import SlackConfig

        with pytest.raises(ValidationError, match="extra"):
            SlackConfig.model_validate({"bot_token": "xoxb-1", "channel": "#general"})

    def test_errors_do_not_quote_the_token(self) -> None:
        from pydantic import ValidationError

        from provisioner.delivery.chat_config import SlackConfig

        with pytest.raises(ValidationError) as raised:
            SlackConfig.model_validate({"bot_token": "xoxp-user-secret"})
        assert "xoxp-user-secret" not in str(raised.value)
        assert "xoxb-" in str(raised.value)

    @pytest.mark.parametrize(
        "url", ["http://slack.example.com/api", "https://slack.com/api?token=x"]
    )
    def test_clear_text_or_query_urls_are_refused(self, url: str) -> None:
        from pydantic import ValidationError

        from provisioner.delivery.chat_config import SlackConfig

        with pytest.raises(ValidationError):
            SlackConfig.model_validate({"bot_token": "xoxb-1", "base_url": url})

    def test_refresh_grant_needs_a_refresh_token(self) -> None:
        from pydantic import ValidationError

        from provisioner.delivery.chat_config import TeamsChatConfig

        with pytest.raises(ValidationError, match="refresh_token"):
            TeamsChatConfig.model_validate(
                {
                    "tenant_id": "contoso.onmicrosoft.com",
                    "client_id": "c",
                    "client_secret": "s",
                    "sender_user_id": "bot@contoso.onmicrosoft.com",
                    "grant": "refresh_token",
                }
            )
