"""The SMTP and file transports against real servers and real files (no mocks)."""

from __future__ import annotations

import asyncio
import re
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest

from provisioner.delivery.base import ChannelRejected, ChannelRetriable
from provisioner.delivery.email import EmailChannel
from provisioner.delivery.transports import (
    FileTransport,
    MailRelayMisconfigured,
    MailTransport,
    SmtpTransport,
)
from provisioner.providers.base import Person
from provisioner.settings import EmailSettings, SmtpSettings
from tests.support import make_delivery_context
from tests.support.smtp import (
    HOST,
    PASSWORD,
    LoopbackController,
    RecordingHandler,
    SmtpServer,
    make_tls_files,
)

pytest_plugins = ("tests.support.smtp",)

SENDER = "Meetings <meetings@example.org>"
MakeTransport = Callable[[SmtpSettings], SmtpTransport]


@pytest.fixture
async def make_transport() -> AsyncIterator[MakeTransport]:
    """SmtpTransports that are closed at teardown, so no socket outlives the test."""
    made: list[SmtpTransport] = []

    def make(settings: SmtpSettings) -> SmtpTransport:
        transport = SmtpTransport(settings)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()


def simple_message(to: str = "ivan@example.org") -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = "test"
    message.set_content("hello")
    return message


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


class TestStartTls:
    async def test_invitation_arrives_for_one_recipient(
        self, smtp_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        channel = EmailChannel(
            EmailSettings(sender=SENDER), transport=make_transport(smtp_server.settings())
        )
        context = make_delivery_context()

        receipt = await channel.send(context)

        [received] = smtp_server.handler.messages
        assert received.rcpt_tos == ("ivan@example.org",)
        assert received.tls
        assert received.authenticated_as == "provisioner"
        message = message_from_bytes(received.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        assert message["Message-ID"] == receipt.message_id
        assert [a.addr_spec for a in message["To"].addresses] == ["ivan@example.org"]
        assert message["Bcc"] is None and message["Cc"] is None
        [attachment] = [p for p in message.iter_attachments()]
        data = attachment.get_payload(decode=True)
        assert isinstance(data, bytes)
        calendar = icalendar.Calendar.from_ical(data)
        assert calendar["METHOD"] == "REQUEST"
        [event] = calendar.walk("VEVENT")
        assert event["UID"] == context.uid

    async def test_wrong_password_is_a_misconfiguration_not_a_rejection(
        self, smtp_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        transport = make_transport(smtp_server.settings(password="not the password"))

        with pytest.raises(MailRelayMisconfigured) as caught:
            await transport.send(simple_message())

        assert isinstance(caught.value, ChannelRetriable)
        assert caught.value.retry_after is not None and caught.value.retry_after >= 60
        assert "not the password" not in str(caught.value)
        assert PASSWORD not in str(caught.value)
        assert smtp_server.authenticator.attempts == [("PLAIN", False)]
        assert smtp_server.handler.messages == []

    async def test_untrusted_certificate_is_a_misconfiguration(
        self, smtp_server: SmtpServer, make_transport: MakeTransport, tmp_path: Path
    ) -> None:
        other_ca = make_tls_files(tmp_path / "other").ca_file
        transport = make_transport(smtp_server.settings(ca_file=other_ca))

        with pytest.raises(MailRelayMisconfigured):
            await transport.send(simple_message())

        assert smtp_server.authenticator.attempts == []

    async def test_two_sends_share_one_connection(
        self, smtp_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        transport = make_transport(smtp_server.settings())

        await transport.send(simple_message("a@example.org"))
        await transport.send(simple_message("b@example.org"))

        assert [m.rcpt_tos for m in smtp_server.handler.messages] == [
            ("a@example.org",),
            ("b@example.org",),
        ]
        assert smtp_server.handler.connections == 1
        assert transport.connections_opened == 1
        assert len(smtp_server.authenticator.attempts) == 1

    async def test_concurrent_sends_are_serialised_on_one_connection(
        self, smtp_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        transport = make_transport(smtp_server.settings())

        await asyncio.gather(
            *(transport.send(simple_message(f"p{i}@example.org")) for i in range(5))
        )

        assert len(smtp_server.handler.messages) == 5
        assert smtp_server.handler.connections == 1

    async def test_reconnects_once_when_the_relay_closes_an_idle_session(
        self, smtp_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        transport = make_transport(smtp_server.settings())
        await transport.send(simple_message("a@example.org"))
        smtp_server.handler.mail_replies.append("421 4.4.2 idle too long, closing")

        await transport.send(simple_message("b@example.org"))

        assert [m.rcpt_tos for m in smtp_server.handler.messages] == [
            ("a@example.org",),
            ("b@example.org",),
        ]
        assert smtp_server.handler.connections == 2

    async def test_reconnects_after_the_connection_dropped(
        self, smtp_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        transport = make_transport(smtp_server.settings())
        await transport.send(simple_message("a@example.org"))
        controller = smtp_server.controller
        assert controller.smtpd is not None
        smtpd = controller.smtpd
        controller.loop.call_soon_threadsafe(lambda: smtpd.transport.close())
        await asyncio.sleep(0.2)

        await transport.send(simple_message("b@example.org"))

        assert len(smtp_server.handler.messages) == 2
        assert smtp_server.handler.connections == 2


class TestImplicitTls:
    async def test_send_over_tls_from_the_first_byte(
        self, smtps_server: SmtpServer, make_transport: MakeTransport
    ) -> None:
        transport = make_transport(smtps_server.settings())

        await transport.send(simple_message())

        [received] = smtps_server.handler.messages
        assert received.tls
        assert received.authenticated_as == "provisioner"


class TestPlainRelay:
    async def test_starttls_mode_refuses_a_relay_without_starttls(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        server = start_smtp_server(mode="plain")
        transport = make_transport(server.settings(security="starttls"))

        with pytest.raises(MailRelayMisconfigured):
            await transport.send(simple_message())

        assert server.authenticator.attempts == []  # the password never crossed in clear
        assert server.handler.messages == []

    async def test_none_mode_without_credentials_sends(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        server = start_smtp_server(mode="plain")
        transport = make_transport(server.settings(username=None, password=None))

        await transport.send(simple_message())

        [received] = server.handler.messages
        assert not received.tls
        assert server.authenticator.attempts == []

    def test_none_mode_with_credentials_is_refused_at_construction(self) -> None:
        settings = SmtpSettings(security="none", username="u", password="p")

        with pytest.raises(ValueError, match="none"):
            SmtpTransport(settings)

    def test_half_a_credential_is_refused(self) -> None:
        with pytest.raises(ValueError):
            SmtpTransport(SmtpSettings(username="u"))


class TestReplies:
    async def test_temporary_recipient_failure_is_retriable(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        server = start_smtp_server(
            handler=RecordingHandler(rcpt_reply="450 4.2.1 mailbox busy, try later")
        )
        transport = make_transport(server.settings())

        with pytest.raises(ChannelRetriable) as caught:
            await transport.send(simple_message())

        assert not isinstance(caught.value, MailRelayMisconfigured)
        assert "450" in str(caught.value)

    async def test_permanent_recipient_failure_is_rejected(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        server = start_smtp_server(handler=RecordingHandler(rcpt_reply="550 5.1.1 no such user"))
        transport = make_transport(server.settings())

        with pytest.raises(ChannelRejected) as caught:
            await transport.send(simple_message())

        assert "550" in str(caught.value)
        assert "no such user" not in str(caught.value)  # reply text is never echoed

    async def test_a_refused_sender_is_a_configuration_problem_not_a_refusal(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        # 5xx to MAIL FROM refuses our own address (email.sender): every message would die
        # at once if it counted as the recipient's refusal; it waits for the fix instead.
        handler = RecordingHandler(mail_replies=["550 5.7.1 sender not allowed to relay"])
        transport = make_transport(start_smtp_server(handler=handler).settings())

        with pytest.raises(MailRelayMisconfigured) as caught:
            await transport.send(simple_message())

        assert "550" in str(caught.value) and "not allowed" not in str(caught.value)

    async def test_a_message_too_large_for_the_relay_is_refused_not_a_configuration_problem(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        # aiosmtplib puts SIZE= on MAIL FROM: a 552 there is about this message alone.
        handler = RecordingHandler(mail_replies=["552 5.3.4 message size exceeds limit"])
        transport = make_transport(start_smtp_server(handler=handler).settings())

        with pytest.raises(ChannelRejected) as caught:
            await transport.send(simple_message())

        assert "552" in str(caught.value)

    async def test_the_connection_is_usable_after_a_rejection(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        handler = RecordingHandler(rcpt_reply="550 5.1.1 no such user")
        server = start_smtp_server(handler=handler)
        transport = make_transport(server.settings())
        with pytest.raises(ChannelRejected):
            await transport.send(simple_message())
        handler.rcpt_reply = None

        await transport.send(simple_message())

        assert len(handler.messages) == 1

    async def test_rejected_message_error_has_no_secrets(
        self, start_smtp_server: Callable[..., SmtpServer], make_transport: MakeTransport
    ) -> None:
        server = start_smtp_server(handler=RecordingHandler(rcpt_reply="550 5.1.1 nope"))
        channel = EmailChannel(
            EmailSettings(sender=SENDER), transport=make_transport(server.settings())
        )

        with pytest.raises(ChannelRejected) as caught:
            await channel.send(make_delivery_context())

        detail = str(caught.value)
        for secret in ("secret-token", "831-552-09", PASSWORD, "meet.example.org"):
            assert secret not in detail


@dataclass
class AsciiOnlyRelay:
    """A plain local relay that does not offer SMTPUTF8, as many still do not."""

    handler: RecordingHandler
    settings: SmtpSettings


@pytest.fixture
def ascii_only_relay() -> Iterator[AsciiOnlyRelay]:
    handler = RecordingHandler()
    # aiosmtpd's Controller offers SMTPUTF8 unless told not to.
    controller = LoopbackController(handler, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield AsciiOnlyRelay(
            handler, SmtpSettings(host=HOST, port=controller.port, security="none")
        )
    finally:
        controller.stop()


class TestInternationalisedAddresses:
    async def test_an_internationalised_domain_is_sent_in_its_ascii_form(
        self, ascii_only_relay: AsciiOnlyRelay, make_transport: MakeTransport
    ) -> None:
        channel = EmailChannel(
            EmailSettings(sender=SENDER), transport=make_transport(ascii_only_relay.settings)
        )
        context = make_delivery_context(recipient=Person(email="ivan@bücher.example", name="I"))

        await channel.send(context)

        [received] = ascii_only_relay.handler.messages
        assert received.rcpt_tos == ("ivan@xn--bcher-kva.example",)
        assert b"To: I <ivan@xn--bcher-kva.example>" in received.content

    async def test_a_non_ascii_local_part_is_rejected_not_retried(
        self, ascii_only_relay: AsciiOnlyRelay, make_transport: MakeTransport
    ) -> None:
        # No ASCII form exists: this relay will refuse it tomorrow too, so the host must
        # hear now rather than after a day of retries.
        transport = make_transport(ascii_only_relay.settings)

        with pytest.raises(ChannelRejected) as caught:
            await transport.send(simple_message(to="josé@example.org"))

        assert "SMTPUTF8" in str(caught.value)
        assert "josé" not in str(caught.value)
        assert ascii_only_relay.handler.messages == []

    async def test_a_sender_needing_smtputf8_is_a_misconfiguration(
        self, ascii_only_relay: AsciiOnlyRelay, make_transport: MakeTransport
    ) -> None:
        # Every message would fail the same way: an operator has to act, and no
        # invitation should be dead-lettered meanwhile.
        transport = make_transport(ascii_only_relay.settings)
        message = simple_message()
        message.replace_header("From", "Réunions <réunions@example.org>")

        with pytest.raises(MailRelayMisconfigured):
            await transport.send(message)


class TestUnreachable:
    async def test_closed_port_is_retriable(self, make_transport: MakeTransport) -> None:
        transport = make_transport(SmtpSettings(host=HOST, port=closed_port()))

        with pytest.raises(ChannelRetriable) as caught:
            await transport.send(simple_message())

        assert not isinstance(caught.value, MailRelayMisconfigured)

    async def test_silent_server_times_out_as_retriable(
        self, make_transport: MakeTransport
    ) -> None:
        writers: list[asyncio.StreamWriter] = []

        async def say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)

        server = await asyncio.start_server(say_nothing, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        transport = make_transport(SmtpSettings(host=HOST, port=port, timeout_seconds=0.3))
        try:
            with pytest.raises(ChannelRetriable):
                await transport.send(simple_message())
        finally:
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()


class TestFileTransport:
    async def test_writes_a_private_eml_file(self, tmp_path: Path) -> None:
        directory = tmp_path / "outbox"
        transport: MailTransport = FileTransport(directory)
        channel = EmailChannel(EmailSettings(sender=SENDER), transport=transport)

        receipt = await channel.send(make_delivery_context(delivery_id="dlv_0042"))

        [written] = list(directory.iterdir())
        assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-dlv_0042\.eml", written.name)
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        message = message_from_bytes(written.read_bytes(), policy=policy.default)
        assert message["Message-ID"] == receipt.message_id
        assert [a.addr_spec for a in message["To"].addresses] == ["ivan@example.org"]

    async def test_message_without_delivery_id_gets_a_unique_name(self, tmp_path: Path) -> None:
        transport = FileTransport(tmp_path)

        first = await transport.send(simple_message())
        second = await transport.send(simple_message())

        assert first != second
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 2
        assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{32}\.eml", n) for n in names)
