"""structlog set-up: one style of event everywhere, a request id on every line, no secrets.

Events are named `domain.subject.past_verb` with keyword fields. The redaction processor
is a backstop: code never passes passcodes, join links or tokens to a logger, but if one
slips through under a secret-sounding key or as a token-shaped string it is removed.
Standard-library logging (uvicorn, alembic) is routed through the same processors.
"""

from __future__ import annotations

import logging
import sys
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


def configure_logging(*, level: str = "INFO", fmt: str = "console", stream: Any = None) -> None:
    """Configure structlog and stdlib logging once per process (idempotent)."""
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
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "asyncio", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
