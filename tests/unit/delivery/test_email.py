from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest

from provisioner.delivery.base import (
    Channel,
    ChannelRejected,
    DeliveryContext,
    Method,
    Role,
)
from provisioner.delivery.email import EmailChannel
from provisioner.delivery.render import (
    default_template_dir,
    format_meeting_time,
    make_template_environment,
)
from provisioner.delivery.transports import FileTransport, SmtpTransport
from provisioner.providers.base import JoinDetails, Person
from provisioner.settings import EmailSettings, SmtpSettings
from tests.support import make_delivery_context

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
SETTINGS = EmailSettings(sender="Meetings <meetings@example.org>", file_dir=Path("unused"))


class RecordingTransport:
    """Keeps what it is given; a transport is the channel's only collaborator."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.closed = False

    async def send(self, message: EmailMessage) -> str:
        self.messages.append(message)
        return str(message["Message-ID"])

    async def aclose(self) -> None:
        self.closed = True


def make_channel(transport: RecordingTransport | None = None) -> EmailChannel:
    return EmailChannel(SETTINGS, transport=transport or RecordingTransport(), clock=lambda: NOW)


def build(context: DeliveryContext) -> EmailMessage:
    """Build, then parse the wire bytes back, so tests see what a mail client sees."""
    built = make_channel().build_message(context)
    parsed = message_from_bytes(built.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(message: EmailMessage, content_type: str) -> str:
    [part] = [
        p for p in message.walk() if p.get_content_type() == content_type and not p.is_attachment()
    ]
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    return content.decode() if isinstance(content, bytes) else str(content)


def calendar_parts(message: EmailMessage) -> list[EmailMessage]:
    return [
        p
        for p in message.walk()
        if isinstance(p, EmailMessage) and p.get_content_type() == "text/calendar"
    ]


class TestStructure:
    def test_exactly_one_recipient(self) -> None:
        message = build(make_delivery_context())

        assert [str(a.addr_spec) for a in message["To"].addresses] == ["ivan@example.org"]
        for header in ("Cc", "Bcc", "Resent-To"):
            assert message[header] is None
        assert str(message["From"]) == "Meetings <meetings@example.org>"

    def test_headers(self) -> None:
        message = build(make_delivery_context())

        assert message["Message-ID"] == "<dlv_0001.delivery@example.org>"
        assert message["Date"].datetime == NOW
        assert message["Auto-Submitted"] == "auto-generated"
        assert str(message["Reply-To"]) == "Hana Host <host@example.org>"

    def test_a_resend_of_one_delivery_keeps_its_message_id(self) -> None:
        # At least once: a resend after a crash is the same message, so mail systems can
        # tell it is a duplicate; another delivery is another message.
        first, again = build(make_delivery_context()), build(make_delivery_context())
        other = build(make_delivery_context(delivery_id="dlv_0002"))
        assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]

    @pytest.mark.parametrize(
        ("method", "role", "subject"),
        [
            (Method.REQUEST, Role.INVITEE, "Invitation: Quarterly review"),
            (Method.REQUEST, Role.HOST, "Your meeting: Quarterly review"),
            (Method.CANCEL, Role.INVITEE, "Cancelled: Quarterly review"),
            (Method.CANCEL, Role.HOST, "Cancelled: Quarterly review"),
        ],
    )
    def test_subject(self, method: Method, role: Role, subject: str) -> None:
        assert build(make_delivery_context(method=method, role=role))["Subject"] == subject

    def test_layout(self) -> None:
        message = build(make_delivery_context())

        assert message.get_content_type() == "multipart/mixed"
        alternative, attachment = message.iter_parts()
        assert alternative.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in alternative.iter_parts()] == [
            "text/plain",
            "text/html",
            "text/calendar",
        ]
        assert attachment.get_content_type() == "text/calendar"
        assert attachment.get_filename() == "invite.ics"
        assert attachment.get_param("method") == "REQUEST"
        assert attachment.get_content_charset() == "utf-8"

    def test_both_calendar_parts_are_the_same_valid_invitation(self) -> None:
        context = make_delivery_context()

        inline, attached = calendar_parts(build(context))

        assert inline.get_param("method") == "REQUEST"
        assert inline.get_payload(decode=True) == attached.get_payload(decode=True)
        data = attached.get_payload(decode=True)
        assert isinstance(data, bytes)
        calendar = icalendar.Calendar.from_ical(data)
        assert calendar["METHOD"] == "REQUEST"
        [event] = calendar.walk("VEVENT")
        assert event["UID"] == context.uid

    def test_uninvited_invitee_is_told_their_invitation_was_withdrawn(self) -> None:
        # Taken off a meeting that goes on: not "cancelled", which would be untrue.
        message = build(make_delivery_context(method=Method.CANCEL, uninvited=True))

        assert message["Subject"] == "Invitation withdrawn: Quarterly review"
        for content_type in ("text/plain", "text/html"):
            text = body(message, content_type)
            assert "Hana Host withdrew your invitation to this meeting." in text
            assert "cancelled" not in text
        [data] = {p.get_payload(decode=True) for p in calendar_parts(message)}
        assert isinstance(data, bytes)
        [event] = icalendar.Calendar.from_ical(data).walk("VEVENT")
        assert "STATUS" not in event

    def test_cancellation_of_the_meeting_still_says_so(self) -> None:
        message = build(make_delivery_context(method=Method.CANCEL))

        assert "Hana Host cancelled this meeting." in body(message, "text/plain")
        assert "Hana Host cancelled this meeting." in body(message, "text/html")

    def test_cancellation_carries_method_cancel_and_no_link(self) -> None:
        message = build(make_delivery_context(method=Method.CANCEL))

        assert {p.get_param("method") for p in calendar_parts(message)} == {"CANCEL"}
        raw = message.as_string()
        assert "secret-token" not in body(message, "text/plain")
        assert "secret-token" not in body(message, "text/html")
        assert "831-552-09" not in raw


class TestSend:
    async def test_send_hands_one_message_to_the_transport(self) -> None:
        transport = RecordingTransport()
        channel = make_channel(transport)

        receipt = await channel.send(make_delivery_context())

        [message] = transport.messages
        assert receipt.channel == "email"
        assert receipt.message_id == message["Message-ID"]

    async def test_aclose_closes_the_transport(self) -> None:
        transport = RecordingTransport()

        await make_channel(transport).aclose()

        assert transport.closed

    def test_is_a_channel(self) -> None:
        assert isinstance(make_channel(), Channel)

    def test_from_settings_picks_the_transport(self, tmp_path: Path) -> None:
        file_channel = EmailChannel.from_settings(
            EmailSettings(transport="file", file_dir=tmp_path)
        )
        smtp_channel = EmailChannel.from_settings(
            EmailSettings(transport="smtp", smtp=SmtpSettings())
        )

        assert isinstance(file_channel._transport, FileTransport)
        assert isinstance(smtp_channel._transport, SmtpTransport)

    def test_sender_must_be_one_address(self) -> None:
        with pytest.raises(ValueError):
            EmailChannel(
                EmailSettings(sender="a@example.org, b@example.org"), transport=RecordingTransport()
            )


class TestContent:
    def test_html_escapes_user_text(self) -> None:
        context = make_delivery_context(
            topic="<script>alert(1)</script>",
            organizer=Person(email="host@example.org", name="<b>Boss</b>"),
        )

        message = build(context)

        html = body(message, "text/html")
        assert "<script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<b>Boss</b>" not in html
        assert "<script>alert(1)</script>" in body(message, "text/plain")

    def test_time_is_shown_in_the_meeting_zone(self) -> None:
        message = build(make_delivery_context())

        expected = "Tuesday 1 December 2026, 14:00–15:00 CET (Europe/Berlin)"
        assert expected in body(message, "text/plain")
        assert expected in body(message, "text/html")

    def test_join_details(self) -> None:
        message = build(make_delivery_context())

        for content_type in ("text/plain", "text/html"):
            text = body(message, content_type)
            assert "https://meet.example.org/room-7f3a?jwt=secret-token" in text.replace(
                "&amp;", "&"
            )
            assert "831-552-09" in text
            assert "Never post this link publicly." in text

    def test_personal_notice(self) -> None:
        personal = build(make_delivery_context(personal=True))
        shared = build(
            make_delivery_context(
                personal=False, join=JoinDetails(url="https://meet.example.org/r")
            )
        )

        notice = "This link is yours alone: do not forward it; a forwarded link identifies you."
        assert notice in body(personal, "text/plain")
        assert notice in body(personal, "text/html")
        assert notice not in body(shared, "text/plain")
        assert notice not in body(shared, "text/html")
        assert "Passcode" not in body(shared, "text/plain")


class TestHostSecurity:
    def test_host_is_told_what_was_not_enforced(self) -> None:
        message = build(make_delivery_context(role=Role.HOST))

        text = body(message, "text/plain")
        assert "Jitsi could not enforce:" in text
        assert "waiting room -- turn it on from the meeting's security options" in text
        assert "Only the host can share their screen." in text
        assert "End the meeting for everyone" in text
        html = body(message, "text/html")
        assert "Jitsi could not enforce" in html
        assert "waiting room" in html
        assert "If someone disrupts the meeting" in html

    def test_control_not_enforced_is_not_listed_as_applied(self) -> None:
        text = body(build(make_delivery_context(role=Role.HOST)), "text/plain")

        applied = text.split("Security settings Jitsi applies:")[1].split("could not")[0]
        assert "waiting room" not in applied

    def test_invitee_is_not_told_about_weaknesses(self) -> None:
        message = build(make_delivery_context(role=Role.INVITEE))

        for content_type in ("text/plain", "text/html"):
            text = body(message, content_type)
            assert "could not enforce" not in text
            assert "waiting room" not in text
            assert "Security settings" not in text


class TestHeaderSafety:
    def test_line_break_in_recipient_name_adds_no_header(self) -> None:
        recipient = Person(
            email="ivan@example.org", name="Ivan\r\nBcc: eve@evil.example\r\nX-Evil: 1"
        )

        built = make_channel().build_message(make_delivery_context(recipient=recipient))

        raw = built.as_bytes()
        assert b"\nBcc:" not in raw
        assert b"\nX-Evil:" not in raw
        parsed = message_from_bytes(raw, policy=policy.default)
        assert [a.addr_spec for a in parsed["To"].addresses] == ["ivan@example.org"]
        assert parsed["Bcc"] is None

    def test_line_break_in_topic_stays_in_the_subject(self) -> None:
        message = build(make_delivery_context(topic="Review\r\nBcc: eve@evil.example"))

        assert message["Subject"] == "Invitation: Review Bcc: eve@evil.example"
        assert message["Bcc"] is None

    def test_internationalised_domains_are_sent_in_their_ascii_form(self) -> None:
        # Only the ASCII form crosses a relay without SMTPUTF8, and a non-ASCII domain in
        # a header would be mangled into an encoded word.
        context = make_delivery_context(
            recipient=Person(email="ivan@Bücher.example", name="Ivan"),
            organizer=Person(email="hana@straße.example", name="Hana"),
        )

        message = build(context)

        assert [a.addr_spec for a in message["To"].addresses] == ["ivan@xn--bcher-kva.example"]
        # IDNA 2008: ß stays ß (strasse.example would be another domain).
        assert [a.addr_spec for a in message["Reply-To"].addresses] == [
            "hana@xn--strae-oqa.example"
        ]

    def test_a_non_ascii_local_part_is_rejected(self) -> None:
        # It has no ASCII form, and the email package will not build the header.
        context = make_delivery_context(recipient=Person(email="josé@bücher.example", name="J"))

        with pytest.raises(ChannelRejected):
            make_channel().build_message(context)

    def test_an_invalid_internationalised_domain_is_rejected(self) -> None:
        context = make_delivery_context(recipient=Person(email="ivan@bü--x.example", name="I"))

        with pytest.raises(ChannelRejected):
            make_channel().build_message(context)

    @pytest.mark.parametrize(
        "email",
        [
            "ivan@example.org\r\nBcc: eve@evil.example",
            "ivan@example.org, eve@evil.example",
            "not-an-address",
            "ivan@@example.org",
        ],
    )
    def test_bad_recipient_address_is_rejected_without_secrets(self, email: str) -> None:
        context = make_delivery_context(recipient=Person(email=email, name="Ivan"))

        with pytest.raises(ChannelRejected) as caught:
            make_channel().build_message(context)

        assert "secret-token" not in str(caught.value)
        assert "831-552-09" not in str(caught.value)

    @pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "ftp://x/y"])
    def test_only_web_links_are_sent(self, url: str) -> None:
        with pytest.raises(ChannelRejected) as caught:
            make_channel().build_message(make_delivery_context(join=JoinDetails(url=url)))

        assert url not in str(caught.value)

    def test_unknown_time_zone_is_rejected(self) -> None:
        with pytest.raises(ChannelRejected):
            make_channel().build_message(make_delivery_context(timezone="Nowhere/Else"))


class TestMeetingTimeFormat:
    @pytest.mark.parametrize(
        ("start", "end", "timezone", "expected"),
        [
            (
                datetime(2026, 12, 1, 13, tzinfo=UTC),
                datetime(2026, 12, 1, 14, tzinfo=UTC),
                "Europe/Berlin",
                "Tuesday 1 December 2026, 14:00–15:00 CET (Europe/Berlin)",
            ),
            (
                datetime(2026, 7, 1, 18, tzinfo=UTC),
                datetime(2026, 7, 1, 19, tzinfo=UTC),
                "America/New_York",
                "Wednesday 1 July 2026, 14:00–15:00 EDT (America/New_York)",
            ),
            (
                datetime(2026, 12, 1, 22, tzinfo=UTC),
                datetime(2026, 12, 2, 0, 30, tzinfo=UTC),
                "Europe/Berlin",
                "Tuesday 1 December 2026, 23:00 CET – Wednesday 2 December 2026, 01:30 CET "
                "(Europe/Berlin)",
            ),
            (
                datetime(2026, 3, 8, 6, tzinfo=UTC),
                datetime(2026, 3, 8, 8, tzinfo=UTC),
                "America/New_York",
                "Sunday 8 March 2026, 01:00 EST–04:00 EDT (America/New_York)",
            ),
            (
                datetime(2026, 12, 1, 13, tzinfo=UTC),
                datetime(2026, 12, 1, 14, tzinfo=UTC),
                "UTC",
                "Tuesday 1 December 2026, 13:00–14:00 UTC",
            ),
        ],
    )
    def test_format(self, start: datetime, end: datetime, timezone: str, expected: str) -> None:
        assert format_meeting_time(start, timezone, end) == expected

    def test_filter_is_registered(self) -> None:
        environment = make_template_environment(default_template_dir())
        template = environment.from_string("{{ start | datetime('Europe/Berlin') }}")

        rendered = template.render(start=datetime(2026, 12, 1, 13, tzinfo=UTC))

        assert rendered == "Tuesday 1 December 2026, 14:00 CET (Europe/Berlin)"

    def test_missing_variable_is_an_error(self) -> None:
        environment = make_template_environment(default_template_dir())

        with pytest.raises(Exception, match="join_url"):
            environment.from_string("{{ join_url }}").render()
