"""The background log writer: a stalled sink costs counted lines, never a blocked caller."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
import structlog

from provisioner.logs import configure_logging, stop_background_writer

LIVENESS_S = 10.0  # how long a call that must not wait is given before the test fails


class StalledSink:
    """A text stream whose writes wait until `release()`: a full pipe, a hung collector."""

    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []
        self.entered = threading.Event()
        self._open = threading.Event()
        self._written = threading.Condition()

    def write(self, text: str) -> int:
        self.entered.set()
        self._open.wait()
        with self._written:
            self.lines.extend(json.loads(line) for line in text.splitlines() if line)
            self._written.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def release(self) -> None:
        self._open.set()

    def wait_for(self, count: int) -> None:
        with self._written:
            assert self._written.wait_for(lambda: len(self.lines) >= count, LIVENESS_S)

    def events(self) -> list[object]:
        return [line["event"] for line in self.lines]


@pytest.fixture
def sink() -> Iterator[StalledSink]:
    stalled = StalledSink()
    yield stalled
    stalled.release()
    stop_background_writer()
    logging.getLogger().handlers.clear()
    structlog.contextvars.clear_contextvars()


def log_from_a_thread(*events: str) -> None:
    """Log `events` on another thread and fail unless it returns while the sink is stuck."""

    def run() -> None:
        log = structlog.get_logger("test")
        for event in events:
            log.info(event)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIVENESS_S)
    assert not thread.is_alive(), "logging waited for a stalled sink"


def test_a_stalled_sink_does_not_stop_the_caller_and_lines_keep_their_context(
    sink: StalledSink,
) -> None:
    configure_logging(level="INFO", fmt="json", stream=sink, background=True)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    structlog.get_logger("test").info("first.line.logged")
    assert sink.entered.wait(LIVENESS_S)  # the writer is stuck inside the sink now

    # The context is read where the line is logged, not on the writer's thread.
    def run() -> None:
        structlog.contextvars.bind_contextvars(request_id="req-2")
        structlog.get_logger("test").info("second.line.logged", passcode="hunter2")
        # A stdlib logger nothing else configures (uvicorn's may not propagate).
        logging.getLogger("tests.stdlib").warning("stdlib %s", "line")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(LIVENESS_S)
    assert not thread.is_alive(), "logging waited for a stalled sink"

    sink.release()
    stop_background_writer()
    assert sink.events() == ["first.line.logged", "second.line.logged", "stdlib line"]
    assert [line.get("request_id") for line in sink.lines] == ["req-1", "req-2", "req-2"]
    assert sink.lines[1]["passcode"] == "[redacted]"  # the same processors as ever


def test_lines_past_the_queue_are_dropped_counted_and_reported(sink: StalledSink) -> None:
    configure_logging(level="INFO", fmt="json", stream=sink, background=True, queue_lines=2)
    structlog.get_logger("test").info("line.0")
    assert sink.entered.wait(LIVENESS_S)  # line.0 is in the sink; the queue is empty
    log_from_a_thread(*(f"line.{n}" for n in range(1, 10)))  # 2 queued, 7 dropped

    sink.release()
    sink.wait_for(3)
    log_from_a_thread("after.drain")
    stop_background_writer()

    assert sink.events() == ["line.0", "line.1", "line.2", "log.lines.dropped", "after.drain"]
    notice = sink.lines[3]
    assert notice["count"] == 7 and notice["level"] == "warning"


def test_stopping_gives_up_on_a_sink_that_never_moves(sink: StalledSink) -> None:
    configure_logging(level="INFO", fmt="json", stream=sink, background=True, queue_lines=1)
    structlog.get_logger("test").info("stuck")
    assert sink.entered.wait(LIVENESS_S)
    log_from_a_thread("queued")  # fills the queue: not even the stop signal fits

    def stop() -> None:
        stop_background_writer(timeout=0.05)

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    stopper.join(LIVENESS_S)
    assert not stopper.is_alive(), "stopping hung on a stuck sink"


def test_after_the_writer_stops_lines_are_written_by_the_caller(sink: StalledSink) -> None:
    configure_logging(level="INFO", fmt="json", stream=sink, background=True)
    sink.release()
    structlog.get_logger("test").info("before.stop")
    stop_background_writer()

    structlog.get_logger("test").info("after.stop")  # an exit hook, say

    assert sink.events() == ["before.stop", "after.stop"]  # not left in a dead queue


def test_after_giving_up_on_a_stuck_sink_logging_still_never_waits(sink: StalledSink) -> None:
    configure_logging(level="INFO", fmt="json", stream=sink, background=True, queue_lines=1)
    structlog.get_logger("test").info("stuck")
    assert sink.entered.wait(LIVENESS_S)
    log_from_a_thread("queued")  # the queue is full: the stop signal finds no room
    stop_background_writer(timeout=0.05)
    # The caller does not take the writing over from a writer stuck in the sink.
    log_from_a_thread("while.stuck")


def test_without_background_the_caller_writes() -> None:
    lines: list[str] = []

    class Stream:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    configure_logging(level="INFO", fmt="json", stream=Stream())
    try:
        structlog.get_logger("test").info("written.now")
        assert json.loads(lines[0])["event"] == "written.now"  # no thread, no wait
    finally:
        logging.getLogger().handlers.clear()
