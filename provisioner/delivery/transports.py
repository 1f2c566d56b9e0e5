"""Ways to hand a finished email to the world: an SMTP relay, or files for development.

Transports raise the channel's typed errors, so the worker decides whether to retry
from the class alone:

    ChannelError
    ├── ChannelRetriable            connection refused, timeouts, dropped connections, 4xx
    │   └── MailRelayMisconfigured  credentials refused, STARTTLS missing, certificate
    │                               rejected, the sender refused (550/553/555 to MAIL FROM) or
    │                               needing SMTPUTF8: every delivery fails until an
    │                               operator acts
    └── ChannelRejected             5xx for this message (recipient or content), or
                                    an address with a non-ASCII local part that the relay
                                    cannot take (no SMTPUTF8)

Why a failed login is retriable and not rejected: nothing is wrong with the message.
Dead-lettering every delivery because a password was rotated would lose invitations
that a configuration fix (and a restart) would have sent. `MailRelayMisconfigured`
asks for a long `retry_after` so we do not hammer the relay with a bad password (and
lock the account), and its own class lets alerting page someone instead of waiting for
the retries to run out.

No error message carries the message, a join link, a passcode or the SMTP password:
only SMTP reply codes and our own words.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import tempfile
import uuid
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import ClassVar, NoReturn, Protocol, runtime_checkable

import aiosmtplib

from provisioner.delivery.base import ChannelError, ChannelRejected, ChannelRetriable
from provisioner.settings import SmtpSettings

DELIVERY_ID_HEADER = "X-Provisioner-Delivery-Id"

_MISCONFIGURED_RETRY_SECONDS = 300.0
_AUTH_CODES = frozenset({530, 534, 535, 538})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


class MailRelayMisconfigured(ChannelRetriable):
    """The relay refused our credentials or TLS set-up; an operator has to fix it."""

    code: ClassVar[str] = "delivery-misconfigured"
    title: ClassVar[str] = "The mail relay refused our configuration"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=_MISCONFIGURED_RETRY_SECONDS)


@runtime_checkable
class MailTransport(Protocol):
    """Delivers finished messages; the message already names its one recipient."""

    async def send(self, message: EmailMessage) -> str:
        """Deliver `message` to the addresses in its To header.

        Returns:
            The message's Message-ID (one is added if the message has none).

        Raises:
            ChannelRetriable: try again later.
            ChannelRejected: this message will never be accepted as it is.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; called once at shutdown."""
        ...


def ensure_message_id(message: EmailMessage) -> str:
    """The message's Message-ID, adding one first if it has none."""
    if message["Message-ID"] is None:
        message["Message-ID"] = make_msgid()
    return str(message["Message-ID"])


class FileTransport:
    """Writes each message to `<directory>/<timestamp>-<delivery id>.eml`.

    For development and demos: nothing leaves the machine. The files hold join links,
    so the folder is created 0700 and every file 0600, and each file appears whole
    (written to a temporary name, then renamed) so a reader never sees half a message.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> str:
        message_id = ensure_message_id(message)
        data = message.as_bytes(policy=policy.SMTP)
        await asyncio.to_thread(self._write, data, _file_stem(message))
        return message_id

    async def aclose(self) -> None:
        return None

    def _write(self, data: bytes, stem: str) -> Path:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / f"{stem}.eml"
        # mkstemp creates the file 0600 whatever the umask.
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target


def _file_stem(message: EmailMessage) -> str:
    timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    delivery_id = _SAFE_NAME.sub("", str(message.get(DELIVERY_ID_HEADER, "")))[:64]
    return f"{timestamp}-{delivery_id or uuid.uuid4().hex}"


class SmtpTransport:
    """Sends through one SMTP relay over one connection, kept open and reused.

    Security modes (`SmtpSettings.security`):
      - `starttls`: plain connect, then STARTTLS is *required*; a server that does not
        offer it is refused before AUTH, so credentials never cross in the clear.
      - `tls`: TLS from the first byte (port 465).
      - `none`: no encryption, only for a local relay and only without credentials.

    Certificates are always verified, against `ca_file` when set (a private CA).
    Sends are serialised by a lock because an SMTP connection carries one
    transaction at a time.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        """Check the settings and prepare TLS; nothing connects until the first send.

        Raises:
            ValueError: credentials with `security="none"`, or half a credential pair.
        """
        has_username = settings.username is not None
        has_password = settings.password is not None
        if has_username != has_password:
            raise ValueError("smtp.username and smtp.password must be set together")
        if settings.security == "none" and has_username:
            raise ValueError(
                'smtp.security="none" would send the password in the clear; use "starttls" or "tls"'
            )
        self._settings = settings
        self._tls_context = None if settings.security == "none" else _tls_context(settings.ca_file)
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0

    async def send(self, message: EmailMessage) -> str:
        message_id = ensure_message_id(message)
        async with self._lock:
            try:
                await self._send_reusing_connection(message)
            except BaseException:
                # After a failure the session may sit mid-transaction; start afresh.
                self._drop()
                raise
        return message_id

    async def aclose(self) -> None:
        async with self._lock:
            smtp, self._smtp = self._smtp, None
            if smtp is None:
                return
            transport = smtp.transport
            try:
                if smtp.is_connected:
                    await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            finally:
                _discard(smtp, transport)

    async def _send_reusing_connection(self, message: EmailMessage) -> None:
        smtp, fresh = self._smtp, False
        if smtp is None or not smtp.is_connected:
            smtp, fresh = await self._connect(), True
        try:
            await _send_once(smtp, message)
        except _SessionClosed:
            if fresh:
                raise ChannelRetriable("the mail relay closed the session") from None
            # The relay dropped our idle connection; that says nothing about this
            # message, so reconnect and try once more.
            self._drop()
            try:
                await _send_once(await self._connect(), message)
            except _SessionClosed:
                raise ChannelRetriable("the mail relay closed the session") from None

    async def _connect(self) -> aiosmtplib.SMTP:
        """A connected (and, when configured, secured and logged-in) session."""
        settings = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout_seconds,
            use_tls=settings.security == "tls",
            # STARTTLS is done by hand below; False (not None) also stops aiosmtplib
            # from trying it opportunistically against a "none" relay.
            start_tls=False,
            validate_certs=True,
            tls_context=self._tls_context,
        )
        try:
            await smtp.connect()
            if settings.security == "starttls":
                await _start_tls(smtp)
            if settings.username is not None and settings.password is not None:
                await _authenticate(smtp, settings.username, settings.password.get_secret_value())
        except BaseException as exc:
            _discard(smtp, smtp.transport)
            _raise_for_connect(exc)
        self._smtp = smtp
        self.connections_opened += 1
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _discard(smtp, smtp.transport)


def _discard(smtp: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None) -> None:
    """Close the socket now, skipping the TLS goodbye.

    `SMTP.close()` starts a graceful TLS shutdown that waits for the relay's answer;
    if the event loop stops first (worker shutdown, a test ending) the socket is left
    open. After QUIT, or after an error, there is nothing left to say, so abort.
    """
    smtp.close()
    if isinstance(transport, asyncio.Transport):
        transport.abort()


async def _start_tls(smtp: aiosmtplib.SMTP) -> None:
    """Upgrade to TLS or give up: a relay that does not offer STARTTLS (or an attacker
    who stripped it from the EHLO reply) never sees our credentials or a message."""
    await smtp.ehlo()
    if not smtp.supports_extension("starttls"):
        raise MailRelayMisconfigured("the mail relay does not offer STARTTLS")
    await smtp.starttls()
    if smtp.get_transport_info("sslcontext") is None:
        raise MailRelayMisconfigured("the mail relay did not start TLS")


async def _authenticate(smtp: aiosmtplib.SMTP, username: str, password: str) -> None:
    """Log in with ONE mechanism. aiosmtplib's `login()` tries every mechanism the
    relay offers, so a wrong password would count as several failed logins, and
    relays lock accounts after a few."""
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    offered = set(smtp.server_auth_methods)
    mechanisms = {
        "plain": smtp.auth_plain,
        "login": smtp.auth_login,
        "cram-md5": smtp.auth_crammd5,
    }
    for name, mechanism in mechanisms.items():
        if name in offered:
            await mechanism(username, password)
            return
    raise MailRelayMisconfigured("the mail relay offers no AUTH mechanism we support")


class _SessionClosed(Exception):
    """The relay hung up or said 421; on a reused connection, reconnect once."""


async def _send_once(smtp: aiosmtplib.SMTP, message: EmailMessage) -> None:
    try:
        await smtp.send_message(message)
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code == 421:  # "service closing": the relay timed our session out
            raise _SessionClosed from exc
        _raise_for_reply(exc)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        code = exc.recipients[0].code if exc.recipients else 550
        _raise_for_code(code, "the mail relay refused the recipient", exc)
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise _SessionClosed from exc
    except aiosmtplib.SMTPNotSupported as exc:
        # Raised before anything is sent, for an address with a non-ASCII local part
        # (a domain is sent in its ASCII form) when the relay lacks SMTPUTF8. Retrying
        # cannot help: this relay will refuse the address tomorrow too, so the host
        # should hear now, not after a day of retries. Unless the address is our own
        # sender's: then every message fails until an operator acts.
        if not _sender_is_ascii(message):
            raise MailRelayMisconfigured(
                "the mail relay does not offer SMTPUTF8, which email.sender needs"
            ) from exc
        raise ChannelRejected(
            "the mail relay cannot take this internationalised address (no SMTPUTF8)"
        ) from exc
    except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
        raise ChannelRetriable("the mail relay did not answer in time") from exc
    except aiosmtplib.SMTPException as exc:
        raise ChannelRetriable(f"the SMTP session failed ({type(exc).__name__})") from exc
    except OSError as exc:
        raise ChannelRetriable("the connection to the mail relay failed") from exc


def _sender_is_ascii(message: EmailMessage) -> bool:
    """Whether the From address (not its display name) is plain ASCII."""
    addresses: tuple[Address, ...] = getattr(message["From"], "addresses", ())
    return all(address.addr_spec.isascii() for address in addresses)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _raise_for_connect(exc: BaseException) -> NoReturn:
    """Translate a failure while connecting, securing or logging in.

    Nothing here is about the message: a 5xx greeting, a refused login or an untrusted
    certificate is the relay or our configuration, so it is never `ChannelRejected`.
    """
    if isinstance(exc, ChannelError) or not isinstance(exc, Exception):
        raise exc  # already translated, or cancellation
    chain = (exc, exc.__cause__, exc.__context__)
    if any(isinstance(link, ssl.SSLCertVerificationError) for link in chain):
        raise MailRelayMisconfigured(
            "the mail relay's TLS certificate was not trusted (check smtp.ca_file)"
        ) from exc
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code in _AUTH_CODES:
            raise MailRelayMisconfigured(
                f"the mail relay refused our credentials ({exc.code}); "
                "check smtp.username and smtp.password"
            ) from exc
        if exc.code >= 500:
            raise MailRelayMisconfigured(
                f"the mail relay refused the session ({exc.code})"
            ) from exc
        raise ChannelRetriable(f"the mail relay is not accepting mail now ({exc.code})") from exc
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        raise MailRelayMisconfigured(
            "the mail relay does not offer what smtp.security or the login needs "
            "(STARTTLS or a supported AUTH method)"
        ) from exc
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        raise ChannelRetriable("the mail relay did not answer in time") from exc
    if isinstance(exc, ssl.SSLError):
        raise MailRelayMisconfigured("TLS with the mail relay failed") from exc
    if isinstance(exc, OSError | aiosmtplib.SMTPException):
        raise ChannelRetriable("could not connect to the mail relay") from exc
    raise exc


# 5xx replies to MAIL FROM that refuse the address itself (RFC 5321 4.2.3).
_SENDER_REFUSED = frozenset({550, 553, 555})


def _raise_for_reply(exc: aiosmtplib.SMTPResponseException) -> NoReturn:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused) and exc.code in _SENDER_REFUSED:
        # Our own address (email.sender) refused for good: every message would fail the
        # same way, and dead-lettering them all at once would lose the invitations that a
        # configuration fix will send. Retried slowly, under the class alerting pages on.
        # (A 552 to MAIL FROM is about this message's SIZE, not the sender: refused below.)
        raise MailRelayMisconfigured(f"the mail relay refused the sender ({exc.code})") from exc
    described = {
        aiosmtplib.SMTPSenderRefused: "the mail relay refused the sender",
        aiosmtplib.SMTPDataError: "the mail relay refused the message",
    }
    _raise_for_code(exc.code, described.get(type(exc), "the mail relay refused"), exc)


def _raise_for_code(code: int, what: str, exc: BaseException) -> NoReturn:
    """4xx is temporary, 5xx permanent; only the code is kept, never the reply text
    (a relay may quote our command back, addresses and all)."""
    if code in _AUTH_CODES:
        raise MailRelayMisconfigured(f"{what} ({code}): authentication required") from exc
    if 400 <= code < 500:
        raise ChannelRetriable(f"{what} for now ({code})") from exc
    raise ChannelRejected(f"{what} ({code})") from exc
