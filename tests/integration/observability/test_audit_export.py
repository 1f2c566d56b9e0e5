"""`provisioner audit export`: JSON lines anyone can re-hash, and RFC 5424 over UDP.

The chain is recomputed here from the export alone (no provisioner code), which is what
an external verifier would do: tamper evidence that survives leaving the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provisioner.cli import app
from provisioner.demo import run_demo

runner = CliRunner()
GENESIS = "0" * 64


def recompute(lines: list[dict[str, Any]], *, anchor: str = GENESIS) -> str:
    """Check every link and hash as an outside verifier would; return the last hash."""
    prev = anchor
    for event in lines:
        assert event["prev_hash"] == prev, f"event {event['id']}: broken link"
        body = json.dumps(
            {
                "prev": event["prev_hash"],
                "at": event["occurred_at"],
                "actor": event["actor"],
                "action": event["action"],
                "target": [event["target"]["type"], event["target"]["id"]],
                "details": event["details"],
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        assert hashlib.sha256(body.encode()).hexdigest() == event["hash"], event["id"]
        prev = event["hash"]
    return prev


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("audit-export") / "demo"
    asyncio.run(run_demo(directory, out=lambda _: None))
    return directory / "provisioner.db"


@pytest.fixture
def configured(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVISIONER_DATABASE__URL", f"sqlite+aiosqlite:///{demo_db}")
    return demo_db


def export(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["audit", "export", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


class TestJsonLines:
    def test_the_export_alone_reproduces_the_chain(self, configured: Path) -> None:
        events = export()
        assert len(events) > 5
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        assert set(events[0]) == {
            "id",
            "occurred_at",
            "actor",
            "action",
            "target",
            "details",
            "prev_hash",
            "hash",
        }
        recompute(events)
        assert "@" not in json.dumps([e["actor"] for e in events])  # actors are subjects

    def test_since_continues_from_a_known_hash(self, configured: Path) -> None:
        everything = export()
        cut = everything[2]
        rest = export("--since", str(cut["id"]))
        assert [e["id"] for e in rest] == [e["id"] for e in everything[3:]]
        assert recompute(rest, anchor=cut["hash"]) == everything[-1]["hash"]

    def test_an_edited_line_is_caught_by_the_recomputation(self, configured: Path) -> None:
        events = export()
        events[1]["details"] = {**events[1]["details"], "provider": "elsewhere"}
        with pytest.raises(AssertionError, match=str(events[1]["id"])):
            recompute(events)

    def test_output_file(self, configured: Path, tmp_path: Path) -> None:
        target = tmp_path / "audit.jsonl"
        result = runner.invoke(app, ["audit", "export", "--output", str(target)])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in target.read_text().splitlines()]
        recompute(lines)
        assert f"exported {len(lines)} audit events" in result.output

    def test_unknown_format_is_refused(self, configured: Path) -> None:
        result = runner.invoke(app, ["audit", "export", "--format", "csv"])
        assert result.exit_code == 2


class TestSyslog:
    def test_each_event_arrives_as_one_rfc5424_datagram(self, configured: Path) -> None:
        expected = export()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
            collector.bind(("127.0.0.1", 0))
            collector.settimeout(5)
            port = collector.getsockname()[1]
            result = runner.invoke(app, ["audit", "export", "--syslog", f"127.0.0.1:{port}"])
            assert result.exit_code == 0, result.output
            assert result.stdout == ""  # with --syslog and no --output, nothing on stdout
            messages = [collector.recv(65535).decode("ascii") for _ in expected]
        assert len(messages) == len(expected)
        forwarded = []
        for message, event in zip(messages, expected, strict=True):
            pri_version, timestamp, _host, app_name, _pid, msgid, sd, payload = message.split(
                " ", 7
            )
            assert pri_version == "<134>1"  # local0.info, syslog protocol version 1
            assert timestamp == event["occurred_at"]
            assert (app_name, msgid, sd) == ("provisioner", event["action"], "-")
            forwarded.append(json.loads(payload))
        assert forwarded == expected
        recompute(forwarded)

    def test_a_bad_address_is_refused(self, configured: Path) -> None:
        result = runner.invoke(app, ["audit", "export", "--syslog", "nowhere"])
        assert result.exit_code == 2
        assert "HOST:PORT" in result.output
