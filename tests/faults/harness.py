"""The real parts the fault tests break on purpose: Zoom and an SMTP relay.

- `FaultyZoom` is the stateful, spec-validated Zoom simulator plus two things fault tests
  need: it remembers every secret it ever handed out (passcodes, links, registrant links,
  access tokens -- also of meetings deleted since), so the log check has real values to
  look for; and it can fail a write *before* doing any work (a bare 500, or a hang: the
  request lost on the way), the counterpart of the simulator's own "after commit" faults.
- `FaultyRelay` is the aiosmtpd recording handler with per-recipient RCPT replies (one
  mailbox refusing while the others accept) and a hold on one DATA, so a worker can be
  killed at a known point: with a message accepted by the relay but not yet recorded.
  `bring_back` restarts a stopped relay on the same port, as a relay back from an outage.
- `deterministic_worker` is the service's worker without jitter, and `until` waits for a
  condition with a hang guard (never a timing assertion).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from provisioner.delivery.worker import DeliveryWorker
from provisioner.state import AppState
from tests.simulators.validation import CapturedResponse, json_response
from tests.simulators.zoom import ZoomSimulator
from tests.support.smtp import (
    LoopbackController,
    RecordingHandler,
    SmtpServer,
    TlsFiles,
    server_tls_context,
)

INTERNAL_ERROR = {"code": 500, "message": "Internal error."}


class Early(StrEnum):
    """A write that fails before Zoom did anything."""

    ERROR = "error"  # a bare 500
    HANG = "hang"  # no answer within the client's timeout: the request was lost


class FaultyZoom(ZoomSimulator):
    """`ZoomSimulator` that keeps every secret it issued and can fail writes early.

    `early_creates` / `early_registrants` / `early_deletes` are consumed one per call
    (POST meeting, POST registrant, DELETE meeting), before the simulator's own
    `create_faults` / `registrant_faults`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issued: set[str] = set()
        self.early_creates: list[Early] = []
        self.early_registrants: list[Early] = []
        self.early_deletes: list[Early] = []

    def _remember(self, body: bytes | memoryview, *keys: str) -> None:
        try:
            payload = json.loads(bytes(body))
        except ValueError:
            return
        if isinstance(payload, dict):
            self.issued.update(str(payload[k]) for k in keys if payload.get(k))

    async def _route(self, scope: Scope, body: bytes, method: str, path: str) -> CapturedResponse:
        parts = path.strip("/").split("/")
        early: list[Early] | None = None
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "meetings":
            early = self.early_creates
        elif method == "POST" and len(parts) == 3 and parts[2] == "registrants":
            early = self.early_registrants
        elif method == "DELETE" and len(parts) == 2 and parts[0] == "meetings":
            early = self.early_deletes
        if early:
            if early.pop(0) is Early.HANG:
                await asyncio.sleep(self.hang_seconds)  # the client's timeout fires first
            return json_response(500, INTERNAL_ERROR)
        return await super()._route(scope, body, method, path)

    def _token(self, request: Request) -> CapturedResponse:
        answer = super()._token(request)
        self._remember(answer.body, "access_token")
        return answer

    async def create_meeting(self, request: Request) -> Response:
        response = await super().create_meeting(request)
        self._remember(response.body, "password", "join_url", "start_url", "registration_url")
        return response

    async def add_registrant(self, request: Request) -> Response:
        response = await super().add_registrant(request)
        self._remember(response.body, "join_url")
        return response


@dataclass
class FaultyRelay(RecordingHandler):
    """A relay whose replies the test sets per recipient, and which can hold one DATA.

    `rcpt_by_address` maps a lower-case address to the reply for its RCPT ("451 ...",
    "550 ..."); others are accepted. With `hold_at = n` the n-th message (0-based) is
    recorded as received, then its 250 is held until `release` is set; `holding` says
    that moment has come.
    """

    rcpt_by_address: dict[str, str] = field(default_factory=dict)
    hold_at: int | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_by_address.get(address.lower())
        if reply is not None:
            return reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.hold_at is not None and len(self.messages) == self.hold_at + 1:
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return reply


class SamePortController(LoopbackController):
    """A relay started again where it was: clients configured with its port reconnect."""

    def __init__(self, handler: RecordingHandler, port: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.port = port


def bring_back(server: SmtpServer, tls: TlsFiles) -> None:
    """Start a stopped STARTTLS relay again on its port, with its handler (and so what it
    received so far) and its credentials; the fixture stops it at teardown."""
    assert server.mode == "starttls"
    server.controller = SamePortController(
        server.handler,
        server.port,
        authenticator=server.authenticator,
        tls_context=server_tls_context(tls),
        require_starttls=True,
        auth_required=True,
    )
    server.controller.start()


def deterministic_worker(state: AppState) -> DeliveryWorker:
    """The service's delivery worker with no jitter: a retry is due at once (backoff 0)."""
    return DeliveryWorker(
        state.db,
        state.channels,
        cipher=state.cipher,
        settings=state.settings.worker,
        worker_id="faults-worker",
        rand=lambda: 0.0,
    )


DEADLINE_SECONDS = 60.0  # a hang guard for the waits below, not a speed assertion


async def until(
    done: Callable[[], bool | Awaitable[bool]],
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait for `done`, failing if `process` dies first or the guard runs out."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        outcome = done()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return
        if process is not None:
            assert process.poll() is None, f"the process exited with {process.returncode}"
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.01)
