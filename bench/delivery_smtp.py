"""Benchmark: one meeting with 1,000 invitees delivered to a local SMTP server.

Ours: the real path -- a meeting provisioned on SQLite (Jitsi, 1,001 personal tokens), then
the outbox worker claims, decrypts, renders (HTML, text, .ics) and sends each message over
one reused SMTP connection. Baseline, in the same run against the same server: a bare
`smtplib` loop sending the very same 1,001 pre-rendered messages over one connection.
The ratio is what the whole pipeline costs next to the wire alone; machines here are noisy,
so compare ratios, not absolute rates.

Run: `make bench` (or `.venv/bin/python -m bench.delivery_smtp`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import smtplib
import socket
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from provisioner.app import build_state, close_state
from provisioner.auth.principal import Principal
from provisioner.delivery.base import ChannelRetriable, DeliveryContext, DeliveryReceipt
from provisioner.delivery.email import EmailChannel
from provisioner.delivery.worker import DeliveryWorker
from provisioner.idempotency.service import request_fingerprint
from provisioner.meetings.schemas import MeetingCreate
from provisioner.meetings.service import provision_meeting
from provisioner.migrate import upgrade_async
from provisioner.settings import Settings

INVITEES = int(os.environ.get("BENCH_INVITEES", "1000"))
REPO_ROOT = Path(__file__).resolve().parent.parent


class CountingHandler:
    """Accepts everything and counts it (the server side costs the same for both runs)."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received += 1
        return "250 OK"


class CapturingChannel:
    """Wraps the email channel and keeps each context, so the baseline can send the very
    same messages (rendered after our timed run, outside both timers)."""

    name = "email"

    def __init__(self, inner: EmailChannel) -> None:
        self.inner = inner
        self.contexts: list[DeliveryContext] = []

    async def send(self, context: DeliveryContext) -> DeliveryReceipt:
        self.contexts.append(context)
        return await self.inner.send(context)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True)
class Rate:
    name: str
    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


def baseline(messages: list[EmailMessage], port: int) -> Rate:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for message in messages:
            smtp.send_message(message)
    return Rate("smtplib loop (same messages)", len(messages), time.perf_counter() - started)


async def ours(directory: Path, port: int) -> tuple[Rate, list[EmailMessage]]:
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{directory / 'bench.db'}"},
        email={
            "transport": "smtp",
            "sender": "m@example.com",
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
        },
        auth={"issuer": "https://idp.bench.invalid", "jwks_file": directory / "jwks.json"},
        security={"data_key_file": directory / "data-key"},
        policy_file=REPO_ROOT / "config" / "policy.yaml",
        worker={"embedded": False, "batch_size": 100},
        api={"max_invitees": INVITEES},
        providers={
            "jitsi": {
                "base_url": "https://meet.example.com",
                "app_id": "bench",
                "domain": "meet.example.com",
                "app_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
        },
    )
    (directory / "jwks.json").write_text('{"keys": []}')
    await upgrade_async(settings.database.url)
    state = build_state(settings)
    capture = CapturingChannel(state.channels["email"])  # type: ignore[arg-type]
    try:
        request = MeetingCreate.model_validate(
            {
                "topic": "All hands",
                "start": "2030-03-04T15:00:00",
                "duration_minutes": 60,
                "timezone": "Europe/Berlin",
                "provider": "jitsi",
                "invitees": [
                    {"email": f"person{i}@example.com", "name": f"Person {i}"}
                    for i in range(INVITEES)
                ],
            }
        )
        host = Principal(
            subject="bench", email="host@example.com", name="Host", groups=(), scopes=frozenset()
        )
        await provision_meeting(
            state.provisioning,
            request=request,
            requester=host,
            provider=state.providers["jitsi"],
            idempotency_key=None,
            fingerprint=request_fingerprint(request.model_dump(mode="json")),
        )
        worker = DeliveryWorker(
            state.db, {"email": capture}, cipher=state.cipher, settings=settings.worker
        )
        started = time.perf_counter()
        sent = await worker.drain()
        elapsed = time.perf_counter() - started
        if sent != INVITEES + 1:
            raise ChannelRetriable(f"only {sent} of {INVITEES + 1} messages were sent")
        messages = [capture.inner.build_message(context) for context in capture.contexts]
        return Rate("provisioner worker (claim, render, send)", sent, elapsed), messages
    finally:
        await close_state(state)


def main() -> None:
    handler = CountingHandler()
    with socket.socket() as probe:  # aiosmtpd checks its port by connecting: pick one first
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mine, messages = asyncio.run(ours(Path(tmp), port))
        base = baseline(messages, port)
    finally:
        controller.stop()
    print(f"\nDelivery of one meeting with {INVITEES} invitees (+ host) to local aiosmtpd")
    print(f"{'path':<44}{'messages':>10}{'seconds':>10}{'msg/s':>10}")
    for rate in (mine, base):
        print(f"{rate.name:<44}{rate.messages:>10}{rate.seconds:>10.2f}{rate.per_second:>10.1f}")
    print(f"ratio ours / baseline: {mine.per_second / base.per_second:.2f}")
    print(f"server received {handler.received} messages in total")


if __name__ == "__main__":
    main()
