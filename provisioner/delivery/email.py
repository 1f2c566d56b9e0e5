"""The email channel: one message, with an .ics invitation, to one person.

Message layout (what Google Calendar sends, which Outlook, Apple Mail and Gmail all
turn into an invitation with accept buttons):

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain
    │   ├── text/html
    │   └── text/calendar; method=REQUEST|CANCEL   inline: Outlook and Gmail read this one
    └── text/calendar; method=...; name=invite.ics attachment: for clients (and people)
                                                    that only look at attachments

Both calendar parts carry the same bytes and are base64-encoded, so relays without
8BITMIME cannot re-wrap the CRLF-folded lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

import idna
import jinja2

from provisioner.briefing.content import load_briefing
from provisioner.delivery.alerts import DeadLetterAlert
from provisioner.delivery.base import (
    ChannelRejected,
    DeliveryContext,
    DeliveryReceipt,
    Method,
    Role,
)
from provisioner.delivery.ics import PERSONAL_NOTICE, PUBLIC_NOTICE, build_invitation
from provisioner.delivery.notices import PrivateNotice
from provisioner.delivery.render import (
    default_template_dir,
    describe_enforced,
    describe_not_enforced,
    make_template_environment,
    provider_label,
    single_line,
)
from provisioner.delivery.transports import (
    DELIVERY_ID_HEADER,
    FileTransport,
    MailTransport,
    SmtpTransport,
)
from provisioner.providers.base import Person
from provisioner.settings import EmailSettings

# What the email package raises for an address it cannot parse (and idna, a UnicodeError,
# for a domain that is no valid internationalised name).
_BAD_ADDRESS = (ValueError, IndexError, HeaderParseError)


class EmailChannel:
    """Sends each delivery as its own email to its one recipient.

    Never Cc or Bcc: one message per person means no invitee learns who else was
    invited, and a personal link cannot reach anyone but its owner.
    """

    name = "email"

    def __init__(
        self,
        settings: EmailSettings,
        *,
        transport: MailTransport | None = None,
        templates: jinja2.Environment | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Build the channel; nothing connects until the first send.

        Args:
            settings: sender and transport configuration.
            transport: where messages go; by default the one `settings` names.
            templates: the Jinja2 environment holding `email/*`; by default the
                project's `templates/` folder.
            clock: the current time (aware); injectable for tests.

        Raises:
            ValueError: `settings.sender` is not one valid address.
        """
        self._sender = _parse_sender(settings.sender)
        self._transport = transport if transport is not None else _make_transport(settings)
        self._templates = (
            templates
            if templates is not None
            else make_template_environment(default_template_dir())
        )
        self._clock = clock if clock is not None else _utc_now

    @classmethod
    def from_settings(cls, settings: EmailSettings) -> EmailChannel:
        """The channel with the transport `settings.transport` names."""
        return cls(settings, transport=_make_transport(settings))

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        """Render and send one message to `context.recipient` alone.

        Returns:
            A receipt with the message's Message-ID.

        Raises:
            ChannelRetriable: the transport failed in a way worth retrying.
            ChannelRejected: the message cannot be built (bad recipient address, unknown
                time zone, a join link that is not http(s)) or the relay refused it.
        """
        return await self._deliver(self.build_message(context))

    def build_message(self, context: DeliveryContext) -> EmailMessage:
        """The complete message for `context.recipient`, ready for a transport.

        Raises:
            ChannelRejected: see `send`.
        """
        recipient = _recipient_address(context)
        if context.method is Method.REQUEST:
            _check_join_url(context.join.url)
        now = self._clock()
        try:
            calendar = build_invitation(context, now=now)
        except ValueError:
            raise ChannelRejected(
                f"delivery {context.delivery_id}: the meeting's time zone "
                f"{context.timezone!r} is unknown or its times are naive"
            ) from None
        subject = _subject(context)
        values = _template_values(context, subject)
        if context.role is Role.HOST:
            values["briefing"] = load_briefing(self._templates, context.provider)
        kind = "invitation" if context.method is Method.REQUEST else "cancellation"
        text = self._templates.get_template(f"email/{kind}.txt").render(values)
        html = self._templates.get_template(f"email/{kind}.html").render(values)

        message = EmailMessage(policy=policy.SMTP)
        message["From"] = self._sender
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = format_datetime(now.astimezone(UTC))
        message["Message-ID"] = _message_id(context.delivery_id, self._sender.domain)
        # An opaque id, not a secret: it lets a bounce (which quotes the headers) and
        # a file in the development outbox be traced back to one delivery row.
        message[DELIVERY_ID_HEADER] = single_line(context.delivery_id)
        reply_to = _organizer_address(context)
        if reply_to is not None:
            message["Reply-To"] = reply_to
        # Vacation responders should not answer an automated invitation.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        calendar_params = {"method": context.method.value, "charset": "utf-8"}
        message.add_alternative(
            calendar, maintype="text", subtype="calendar", cte="base64", params=calendar_params
        )
        message.add_attachment(
            calendar,
            maintype="text",
            subtype="calendar",
            cte="base64",
            filename="invite.ics",
            params={**calendar_params, "name": "invite.ics"},
        )
        return message

    async def send_alert(self, alert: DeadLetterAlert) -> DeliveryReceipt:
        """Tell the host or IT, privately, that a message could not be delivered.

        Raises:
            ChannelRetriable / ChannelRejected: as for `send`.
        """
        return await self._deliver(self.build_alert(alert))

    def build_alert(self, alert: DeadLetterAlert) -> EmailMessage:
        """A plain notice: who was not reached and why; no link, no passcode."""
        recipient = _private_address(alert.recipient, alert.delivery_id, "alert")
        subject = f"Could not deliver: {single_line(alert.topic)}"
        values = {
            "subject": subject,
            "topic": alert.topic,
            "start": alert.start,
            "end": alert.end,
            "timezone": alert.timezone,
            "failed_name": single_line(alert.failed_recipient.name),
            "failed_email": alert.failed_recipient.email,
            "failed_channel": alert.failed_channel,
            "attempts": alert.attempts,
            "reason": alert.reason,
            "meeting_id": alert.meeting_id,
        }
        return self._private_message(
            recipient, alert.delivery_id, "email/delivery_failed", values, headers={}
        )

    async def send_notice(self, notice: PrivateNotice) -> DeliveryReceipt:
        """Send one private notice (an incident filed, an unknown participant, ...).

        Raises:
            ChannelRetriable / ChannelRejected: as for `send`.
        """
        return await self._deliver(self.build_notice(notice))

    def build_notice(self, notice: PrivateNotice) -> EmailMessage:
        """Plain words and at most one link into provisioner; no .ics, no join details."""
        recipient = _private_address(
            notice.recipient, notice.delivery_id, "notice", require_domain=True
        )
        link = notice.link
        if link is not None and urlsplit(link).scheme not in {"https", "http"}:
            link = None  # never a clickable `javascript:` link; the words still go out
        values = {
            "subject": single_line(notice.subject),
            "recipient": single_line(notice.recipient.name) or notice.recipient.email,
            "lines": notice.lines,
            "link": link,
            "meeting_id": notice.meeting_id,
        }
        headers = {"X-Provisioner-Notice": single_line(notice.kind)}
        return self._private_message(
            recipient, notice.delivery_id, "email/notice", values, headers=headers
        )

    async def _deliver(self, message: EmailMessage) -> DeliveryReceipt:
        message_id = await self._transport.send(message)
        return DeliveryReceipt(channel=self.name, message_id=message_id)

    def _private_message(
        self,
        recipient: Address,
        delivery_id: str,
        template: str,
        values: Mapping[str, object],
        *,
        headers: Mapping[str, str],
    ) -> EmailMessage:
        """A plain text-and-HTML message to one person (an alert or a notice), no .ics.

        `values["subject"]` is the Subject; `template` names `<template>.txt` and `.html`;
        `headers` are added after the delivery id.
        """
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = self._sender
        message["To"] = recipient
        message["Subject"] = str(values["subject"])
        message["Date"] = format_datetime(self._clock().astimezone(UTC))
        message["Message-ID"] = _message_id(delivery_id, self._sender.domain)
        message[DELIVERY_ID_HEADER] = single_line(delivery_id)
        for name, value in headers.items():
            message[name] = value
        message["Auto-Submitted"] = "auto-generated"
        text = self._templates.get_template(f"{template}.txt").render(values)
        html = self._templates.get_template(f"{template}.html").render(values)
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        return message

    async def aclose(self) -> None:
        await self._transport.aclose()


def _make_transport(settings: EmailSettings) -> MailTransport:
    if settings.transport == "smtp":
        return SmtpTransport(settings.smtp)
    return FileTransport(settings.file_dir)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _message_id(delivery_id: str, domain: str) -> str:
    """The same Message-ID for every attempt at one delivery row.

    Delivery is at least once: a worker that dies after the relay took a message sends it
    again. With the first attempt's Message-ID the resend is a duplicate that mail
    systems recognise (and many drop), not a second invitation. The delivery id is an
    opaque UUID; the domain is our sender's, so the id is ours (RFC 5322 3.6.4).
    """
    return f"<{single_line(delivery_id)}.delivery@{domain}>"


def _parse_sender(sender: str) -> Address:
    message = EmailMessage(policy=policy.SMTP)
    try:
        message["From"] = sender
        addresses = message["From"].addresses
        if len(addresses) == 1:
            addresses = (_ascii_domain(addresses[0]),)
    except _BAD_ADDRESS:
        addresses = ()
    if len(addresses) != 1 or not addresses[0].domain:
        raise ValueError("email.sender must be exactly one address, e.g. 'Meetings <m@x.org>'")
    address: Address = addresses[0]
    return address


def _recipient_address(context: DeliveryContext) -> Address:
    """The one To address. A line break in the name is flattened (names are the
    user's to choose); anything but a single plain address is refused."""
    try:
        address = _ascii_domain(
            Address(
                display_name=single_line(context.recipient.name),
                addr_spec=context.recipient.email,
            )
        )
    except _BAD_ADDRESS as exc:
        raise ChannelRejected(
            f"delivery {context.delivery_id}: the recipient address is not one valid email address"
        ) from exc
    if not address.domain or not address.username:
        raise ChannelRejected(
            f"delivery {context.delivery_id}: the recipient address has no domain"
        )
    return address


def _private_address(
    person: Person, delivery_id: str, what: str, *, require_domain: bool = False
) -> Address:
    """The one To address of an alert or notice; anything but one valid address is refused."""
    try:
        address = _ascii_domain(
            Address(display_name=single_line(person.name), addr_spec=person.email)
        )
    except _BAD_ADDRESS as exc:
        raise ChannelRejected(
            f"delivery {delivery_id}: the {what} address is not one valid address"
        ) from exc
    if require_domain and (not address.domain or not address.username):
        raise ChannelRejected(f"delivery {delivery_id}: the {what} address has no domain")
    return address


def _organizer_address(context: DeliveryContext) -> Address | None:
    """Replies (questions about the meeting) should reach the organizer rather than
    the service's mailbox; an unusable organizer address just means no Reply-To."""
    try:
        return _ascii_domain(
            Address(
                display_name=single_line(context.organizer.name),
                addr_spec=context.organizer.email,
            )
        )
    except _BAD_ADDRESS:
        return None


def _ascii_domain(address: Address) -> Address:
    """`address` with an internationalised domain in its ASCII (IDNA) form.

    `ivan@bücher.example` and `ivan@xn--bcher-kva.example` are the same mailbox, but only
    the second can cross a relay without SMTPUTF8 (aiosmtplib refuses to send otherwise),
    and a non-ASCII domain in a header would be mangled into an encoded word. A non-ASCII
    local part has no ASCII form: such an address is left as it is (the email package
    refuses it; were it sent, only a relay offering SMTPUTF8 would take it).

    Raises:
        idna.IDNAError (a ValueError): the domain is no valid internationalised name.
    """
    if address.domain.isascii() or not address.username.isascii():
        return address
    # UTS 46 mapping (case folding, full-width dots) as browsers do, without the
    # IDNA 2003 transitional mapping that would turn `straße.de` into `strasse.de`,
    # another domain.
    domain = idna.encode(address.domain, uts46=True).decode("ascii")
    return Address(display_name=address.display_name, username=address.username, domain=domain)


def _check_join_url(url: str) -> None:
    """Only web links go into an email: a `javascript:` or `data:` link from a broken
    provider would otherwise become a clickable button."""
    if urlsplit(url).scheme not in {"https", "http"}:
        raise ChannelRejected("the join link is not an http(s) URL")


def _subject(context: DeliveryContext) -> str:
    topic = single_line(context.topic)
    if context.uninvited:
        return f"Invitation withdrawn: {topic}"
    if context.method is Method.CANCEL:
        return f"Cancelled: {topic}"
    if context.role is Role.HOST:
        return f"Your meeting: {topic}"
    return f"Invitation: {topic}"


def _template_values(context: DeliveryContext, subject: str) -> dict[str, object]:
    """What the templates see. Invitees get no security summary: telling every
    recipient which controls are off tells whoever they forward it to as well."""
    is_host = context.role is Role.HOST
    return {
        "subject": subject,
        "topic": context.topic,
        "start": context.start,
        "end": context.end,
        "timezone": context.timezone,
        "is_host": is_host,
        # A CANCEL taking only this invitee off: the meeting itself goes on.
        "uninvited": context.uninvited,
        "organizer": single_line(context.organizer.name) or context.organizer.email,
        "recipient": single_line(context.recipient.name) or context.recipient.email,
        "provider": provider_label(context.provider),
        "join_url": context.join.url,
        "passcode": context.join.passcode,
        "personal": context.personal,
        "personal_notice": PERSONAL_NOTICE,
        "public_notice": PUBLIC_NOTICE,
        "enforced": describe_enforced(context.settings, context.not_enforced) if is_host else [],
        "not_enforced": describe_not_enforced(context.not_enforced) if is_host else [],
        # The briefing and the emergency links are the host's alone: a forwarded invitee
        # copy must not teach anyone the controls or carry a way to act on the meeting.
        "briefing": None,
        "actions": list(context.actions) if is_host else [],
    }
