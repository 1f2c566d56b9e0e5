"""Export the audit chain: JSON lines a verifier can re-hash, and RFC 5424 syslog over UDP.

Each exported object carries everything its hash covers, so anyone holding the export
can recompute the chain without this code or the database (README "Audit export"):

    sha256(json.dumps({"prev": prev_hash, "at": occurred_at, "actor": actor,
                       "action": action, "target": [target.type, target.id],
                       "details": details},
                      sort_keys=True, separators=(",", ":")))

must equal `hash`, and each `prev_hash` must equal the previous line's `hash` (the first
event's is 64 zeros; after `--since N` it is event N's hash).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select

from provisioner.audit.models import AuditEvent
from provisioner.db import Database

SYSLOG_FACILITY_LOCAL0 = 16
SYSLOG_SEVERITY_INFO = 6
_NILVALUE = "-"


def event_record(event: AuditEvent) -> dict[str, Any]:
    """One event as exported: the hashed fields in exactly the form they were hashed."""
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "target": {"type": event.target_type, "id": event.target_id},
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


async def iter_records(db: Database, *, since: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """Events in chain order (after id `since`, when given), streamed rather than loaded."""
    statement = select(AuditEvent).order_by(AuditEvent.id)
    if since is not None:
        statement = statement.where(AuditEvent.id > since)
    async with db.session() as session:
        result = await session.stream_scalars(statement.execution_options(yield_per=500))
        async for event in result:
            yield event_record(event)


def rfc5424(
    record: dict[str, Any],
    *,
    hostname: str | None = None,
    app_name: str = "provisioner",
    procid: int | None = None,
) -> bytes:
    """An RFC 5424 message: facility local0, severity info, MSGID the action, MSG the JSON.

    The timestamp is the event's own; the JSON is ASCII (`ensure_ascii`), so no BOM.
    """
    pri = SYSLOG_FACILITY_LOCAL0 * 8 + SYSLOG_SEVERITY_INFO
    host = _token(hostname or socket.gethostname(), 255)
    msgid = _token(str(record.get("action", "")), 32)
    header = (
        f"<{pri}>1 {record['occurred_at']} {host} {_token(app_name, 48)} "
        f"{procid if procid is not None else os.getpid()} {msgid} {_NILVALUE}"
    )
    return f"{header} {jsonl_line(record)}".encode("ascii")


def _token(value: str, limit: int) -> str:
    """A header field: printable ASCII without spaces, else the NILVALUE."""
    clean = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return clean or _NILVALUE


def parse_hostport(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class SyslogUdp:
    """Sends each record as one datagram to a syslog collector (RFC 5424 over RFC 5426)."""

    def __init__(self, host: str, port: int) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self._socket = socket.socket(family, kind, proto)
        self._address = address
        self._hostname = socket.gethostname()
        self._pid = os.getpid()

    def send(self, record: dict[str, Any]) -> None:
        self._socket.sendto(
            rfc5424(record, hostname=self._hostname, procid=self._pid), self._address
        )

    def close(self) -> None:
        self._socket.close()


async def export(
    db: Database, *, since: int | None, sinks: list[Callable[[dict[str, Any]], None]]
) -> int:
    """Hand every event (after `since`) to each sink in order; return how many."""
    count = 0
    async for record in iter_records(db, since=since):
        for sink in sinks:
            sink(record)
        count += 1
    return count
