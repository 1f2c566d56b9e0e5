"""Real SMTP servers for tests: aiosmtpd on 127.0.0.1 with STARTTLS or TLS and AUTH.

Use the fixtures with `pytest_plugins = ("tests.support.smtp",)` in a test module (or
the root conftest). Each server gets a certificate from a throw-away private CA, so
the client verifies it exactly as it would verify a company relay (`ca_file`).

    smtp_server        STARTTLS required, AUTH required (LOGIN and PLAIN)
    smtps_server       TLS from the first byte (port-465 style), AUTH offered
    start_smtp_server  a factory for servers with other handlers or modes
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from provisioner.settings import SmtpSettings

HOST = "127.0.0.1"
USERNAME = "provisioner"
PASSWORD = "correct horse battery staple"

Mode = Literal["starttls", "tls", "plain"]


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate it signed for 127.0.0.1."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a fresh CA and a 127.0.0.1 server certificate (PEM) into `directory`."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provisioner test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def server_tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted DATA, with what the server knew about the session."""

    peer: object  # (host, port); aiosmtpd annotates it as a str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool
    authenticated_as: str | None


@dataclass
class RecordingHandler:
    """Accepts mail and remembers it; replies can be forced to test failures.

    `rcpt_reply` answers every RCPT (e.g. "450 ..." or "550 ..."); `mail_replies` answers
    the next MAIL commands in order, then MAIL is accepted again.
    """

    rcpt_reply: str | None = None
    mail_replies: list[str] = field(default_factory=list)
    messages: list[ReceivedMessage] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)

    @property
    def connections(self) -> int:
        """How many distinct client connections said EHLO."""
        return len(set(self.peers))

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if session.peer not in self.peers:
            self.peers.append(session.peer)
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        content = envelope.original_content or b""
        self.messages.append(
            ReceivedMessage(
                peer=session.peer,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=content,
                tls=server.transport.get_extra_info("ssl_object") is not None,
                authenticated_as=session.auth_data if session.authenticated else None,
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class PasswordAuthenticator:
    """Accepts one username and password over LOGIN or PLAIN; records every attempt."""

    username: str = USERNAME
    password: str = PASSWORD
    attempts: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            mechanism in {"LOGIN", "PLAIN"}
            and isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, self.username.encode())
            and hmac.compare_digest(auth_data.password, self.password.encode())
        )
        self.attempts.append((mechanism, ok))
        return AuthResult(success=ok, handled=False, auth_data=self.username if ok else None)


class LoopbackController(Controller):
    """An aiosmtpd Controller on 127.0.0.1 and a port the OS picks.

    Port 0 avoids the race of "find a free port, close it, hope nobody takes it". The
    Controller checks the server by connecting to `self.port`, so the real port is read
    from the bound socket first (`_trigger_server` runs after the bind).
    """

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=0, server_hostname="smtp.test", **kwargs)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@dataclass
class SmtpServer:
    """A running test server and the settings a client needs to reach it."""

    mode: Mode
    port: int
    ca_file: Path
    handler: RecordingHandler
    authenticator: PasswordAuthenticator
    controller: LoopbackController

    def settings(self, **overrides: Any) -> SmtpSettings:
        """Client settings for this server; `password=` may be a str."""
        password = overrides.pop("password", PASSWORD)
        values: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "security": "none" if self.mode == "plain" else self.mode,
            "username": USERNAME,
            "password": SecretStr(password) if isinstance(password, str) else password,
            "ca_file": self.ca_file,
            "timeout_seconds": 5.0,
        }
        values.update(overrides)
        return SmtpSettings(**values)


def start_server(
    tls: TlsFiles,
    *,
    mode: Mode = "starttls",
    handler: RecordingHandler | None = None,
    authenticator: PasswordAuthenticator | None = None,
) -> SmtpServer:
    """Start a server; the caller must `server.controller.stop()`.

    - `starttls`: STARTTLS and AUTH required before MAIL (a company relay on 587).
    - `tls`: TLS from the first byte. aiosmtpd only counts STARTTLS as "TLS" for AUTH,
      so AUTH is offered but not required here; the authenticator still checks it.
    - `plain`: no TLS; AUTH is offered over plain text only so tests can prove the
      client never uses it there.
    """
    handler = handler if handler is not None else RecordingHandler()
    authenticator = authenticator if authenticator is not None else PasswordAuthenticator()
    kwargs: dict[str, Any] = {"authenticator": authenticator}
    if mode == "starttls":
        kwargs.update(
            tls_context=server_tls_context(tls), require_starttls=True, auth_required=True
        )
    elif mode == "tls":
        kwargs.update(ssl_context=server_tls_context(tls), auth_require_tls=False)
    else:
        kwargs.update(auth_require_tls=False)
    controller = LoopbackController(handler, **kwargs)
    controller.start()
    return SmtpServer(
        mode=mode,
        port=controller.port,
        ca_file=tls.ca_file,
        handler=handler,
        authenticator=authenticator,
        controller=controller,
    )


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def start_smtp_server(tls_files: TlsFiles) -> Iterator[Callable[..., SmtpServer]]:
    """Start servers on demand (keyword arguments of `start_server`); all stop at
    teardown, even when the test failed."""
    servers: list[SmtpServer] = []

    def start(**kwargs: Any) -> SmtpServer:
        server = start_server(tls_files, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.controller.stop()


@pytest.fixture
def smtp_server(start_smtp_server: Callable[..., SmtpServer]) -> SmtpServer:
    """STARTTLS + AUTH required, like a company relay on port 587."""
    return start_smtp_server(mode="starttls")


@pytest.fixture
def smtps_server(start_smtp_server: Callable[..., SmtpServer]) -> SmtpServer:
    """TLS from the first byte, like port 465."""
    return start_smtp_server(mode="tls")
