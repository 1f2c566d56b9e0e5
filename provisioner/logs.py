"""structlog set-up: one style of event everywhere, a request id on every line, no secrets.

Events are named `domain.subject.past_verb` with keyword fields. The redaction processor
is a backstop: code never passes passcodes, join links or tokens to a logger, but if one
slips through under a secret-sounding key or as a token-shaped string it is removed.
Standard-library logging (uvicorn, alembic) is routed through the same processors.

The long-running processes (`serve`, `worker`) write their lines from a thread of their
own (`background=True`): a line is rendered where it is logged, so the request's context
is on it, and handed to a bounded queue. A log sink that stalls (a full pipe, a hung
collector) then costs lines, counted and reported once it drains, instead of stopping the
event loop with a transaction open and its rows locked.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from provisioner.redaction import REDACTED, is_secret_key, redact, scrub_text


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        value = event_dict[key]
        if is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = scrub_text(value)
        elif isinstance(value, Mapping | list | tuple | set | frozenset):
            event_dict[key] = redact(value)
        elif isinstance(value, BaseException):
            # An exception object is rendered with its message: scrub that text now.
            event_dict[key] = scrub_text(f"{type(value).__name__}: {value}")
    return event_dict


QUEUE_LINES = 10_000
"""Lines a stalled sink may fall behind before new ones are dropped (a few MiB at most)."""
_BATCH_LINES = 256  # lines the writer joins into one write when it finds them waiting


class _QueueingHandler(logging.Handler):
    """Renders a line on the caller's thread and queues its text; never waits for room.

    A full queue drops the line and counts it. The count goes out as one
    `log.lines.dropped` line ahead of the next line that finds room, so the gap shows
    where it happened.
    """

    def __init__(self, lines: queue.Queue[str | None]) -> None:
        super().__init__()
        self._lines = lines
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # as StreamHandler does: a broken record never raises
            self.handleError(record)
            return
        try:
            if self.dropped:
                self._lines.put_nowait(self.format(self._dropped_notice()))
                self.dropped = 0
            self._lines.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def _dropped_notice(self) -> logging.LogRecord:
        notice = logging.LogRecord(
            __name__, logging.WARNING, __file__, 0, "log.lines.dropped", None, None
        )
        notice.count = self.dropped
        return notice


class _Writer:
    """The thread that writes queued lines, all that are waiting in one write.

    One write per wake-up, not per line: under load the event loop hands over many lines
    between two of the writer's turns, and each turn costs the loop the GIL once.
    """

    def __init__(self, lines: queue.Queue[str | None], stream: Any) -> None:
        self._lines = lines
        self.stream = stream
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="log-writer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._lines.get()]
            while len(batch) < _BATCH_LINES:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            text = "".join(f"{line}\n" for line in batch if line is not None)
            if text:
                try:
                    self.stream.write(text)
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # a closed or broken sink: nowhere left to say so
            if None in batch:
                return

    def stop(self, timeout: float) -> bool:
        """Write what is queued, then end the thread; waits `timeout` in all at most.

        Returns whether the thread ended (False: the sink is stuck).
        """
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        try:
            self._lines.put(None, timeout=timeout)
        except queue.Full:
            pass  # the sink has not moved for `timeout` seconds: leave it to the exit
        self._thread.join(max(0.0, deadline - time.monotonic()))
        ended = not self._thread.is_alive()
        self._thread = None
        return ended


_writer: _Writer | None = None


def stop_background_writer(timeout: float = 5.0) -> None:
    """Write what is queued and stop the writer thread (at exit; waits `timeout` at most).

    Lines logged afterwards (another exit hook, a daemon thread) are written by the caller
    again, not queued for a writer that is gone; unless the sink is stuck, when they are
    left in the queue rather than hang the exit.
    """
    global _writer
    if _writer is None:
        return
    writer, _writer = _writer, None
    if not writer.stop(timeout):
        return
    root = logging.getLogger()
    for index, handler in enumerate(root.handlers):
        if isinstance(handler, _QueueingHandler):
            direct = logging.StreamHandler(writer.stream)
            direct.setFormatter(handler.formatter)
            root.handlers[index] = direct


atexit.register(stop_background_writer)


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "console",
    stream: Any = None,
    background: bool = False,
    queue_lines: int = QUEUE_LINES,
) -> None:
    """Configure structlog and stdlib logging once per process (idempotent).

    `background=True` hands rendered lines to a writer thread through a queue of
    `queue_lines` (see the module docstring); without it a line is written by the caller.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Processors and stream are the same on every call of this function (the stream
        # lives in the handler below), so a logger may keep what it bound on first use.
        cache_logger_on_first_use=True,
    )
    # Our renderers never show where a call came from, or which thread or process made
    # it; not computing them per record is the logging HOWTO's "Optimization" advice
    # (about a third of a log line's cost, measured in bench/provision.py).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter = structlog.stdlib.ProcessorFormatter(
        # ExtraAdder: the count on our own `log.lines.dropped` notice.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(allow=("count",))],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    stop_background_writer()
    handler: logging.Handler
    if background:
        global _writer
        lines: queue.Queue[str | None] = queue.Queue(queue_lines)
        handler = _QueueingHandler(lines)
        _writer = _Writer(lines, stream or sys.stderr)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Held at WARNING whatever `level` says: at DEBUG these print request and response
    # bodies, and a secret store's answer (AWS's `SecretString`, Vault's data) arrives
    # before its value is known to the redactor.
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


_NOISY = (
    "aiosqlite",
    "asyncio",
    "httpx",
    "httpcore",
    "botocore",
    "boto3",
    "urllib3",
    "requests",
    "hvac",
)
