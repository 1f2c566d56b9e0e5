"""The CLI: policy check, the demo, and the audit commands, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli import app
from provisioner.demo import run_demo

REPO_ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


class TestPolicyCheck:
    def test_shipped_policy_prints_every_group(self) -> None:
        result = runner.invoke(app, ["policy", "check", str(REPO_ROOT / "config" / "policy.yaml")])
        assert result.exit_code == 0, result.output
        assert "executives" in result.output and "external-facing" in result.output

    def test_invalid_policy_names_the_key(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            (REPO_ROOT / "config" / "policy.yaml")
            .read_text()
            .replace("waiting_room:", "waiting_rooom:", 1)
        )
        result = runner.invoke(app, ["policy", "check", str(bad)])
        assert result.exit_code == 1
        assert "waiting_rooom" in result.output


class TestDemo:
    async def test_demo_runs_the_whole_flow(self, tmp_path: Path) -> None:
        lines: list[str] = []
        assert await run_demo(tmp_path / "demo", out=lines.append) == 0
        text = "\n".join(lines)
        assert "Idempotent-Replayed: true, same meeting: True" in text
        assert "422 application/problem+json" in text
        assert "sent 4 messages; meeting state delivered" in text
        assert "chain intact: True" in text
        assert len(list((tmp_path / "demo" / "outbox").glob("*.eml"))) == 4
        assert "jwt=" not in text


class TestAuditCommands:
    def test_verify_and_show_on_the_demo_database(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import asyncio

        asyncio.run(run_demo(tmp_path / "demo", out=lambda _: None))
        monkeypatch.setenv(
            "PROVISIONER_DATABASE__URL",
            f"sqlite+aiosqlite:///{tmp_path / 'demo' / 'provisioner.db'}",
        )
        verified = runner.invoke(app, ["audit", "verify"])
        assert verified.exit_code == 0, verified.output
        assert "audit chain intact" in verified.output
        shown = runner.invoke(app, ["audit", "show"])
        assert "meeting.delivered" in shown.output


class TestAuditVerifyDetectsTampering:
    def test_an_edited_row_fails_verify_naming_the_event(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import asyncio
        import sqlite3

        asyncio.run(run_demo(tmp_path / "demo", out=lambda _: None))
        database = tmp_path / "demo" / "provisioner.db"
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", f"sqlite+aiosqlite:///{database}")
        assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
        with sqlite3.connect(database) as connection:
            connection.execute("UPDATE audit_events SET actor = 'mallory' WHERE id = 3")
        result = runner.invoke(app, ["audit", "verify"])
        assert result.exit_code == 1
        assert "BROKEN at event 3" in result.output

    def test_an_unreadable_audit_log_is_exit_2_not_a_tamper_verdict(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Exit 1 means "tampered": a database that cannot be read (here: never migrated)
        # must not page anyone about tampering, nor end in a traceback.
        empty = tmp_path / "empty.db"
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", f"sqlite+aiosqlite:///{empty}")
        result = runner.invoke(app, ["audit", "verify"])
        assert result.exit_code == 2, result.output
        assert "cannot read the audit log: OperationalError" in result.output
