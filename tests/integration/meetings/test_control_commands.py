"""`provisioner meetings ...` run as a responder at a console: the same services as the API,
audited as `cli:<email>`, and never a join link on the screen."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from typer.testing import CliRunner

from provisioner.app import build_state, close_state, create_app
from provisioner.cli import app
from provisioner.settings import Settings
from tests.factories import meeting_body
from tests.support.meeting_fixtures import audit_of

runner = CliRunner()


def create_meeting(settings: Settings, headers: dict[str, str]) -> tuple[str, str]:
    """(meeting id, the host's join URL) of a fresh Jitsi meeting."""

    async def main() -> tuple[str, str]:
        state = build_state(settings)
        try:
            application = create_app(settings, state=state, run_worker=False)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://p.test"
            ) as client:
                response = await client.post(
                    "/api/v1/meetings", json=meeting_body(), headers=headers
                )
            assert response.status_code == 201, response.text
            body = response.json()
            return str(body["id"]), str(body["host_join"]["url"])
        finally:
            await close_state(state)

    return asyncio.run(main())


def rotated_by(settings: Settings, meeting_id: str) -> list[tuple[str, str]]:
    async def main() -> list[tuple[str, str]]:
        state = build_state(settings)
        try:
            return [(a, actor) for a, actor, _ in await audit_of(state, meeting_id)]
        finally:
            await close_state(state)

    return asyncio.run(main())


class TestMeetingCommands:
    def test_rotate_prints_the_new_id_and_audits_the_person(
        self, settings: Settings, host_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("provisioner.cli._settings", lambda: settings)
        meeting_id, host_url = create_meeting(settings, host_headers)
        result = runner.invoke(
            app, ["meetings", "rotate", meeting_id, "--as", "Rosa@Example.com", "--reason", "leak"]
        )
        assert result.exit_code == 0, result.output
        said = result.stdout.strip().splitlines()[-1]  # logs go to stderr, kept apart
        assert said.startswith(f"rotated {meeting_id} -> ")
        assert host_url not in result.output and "jwt=" not in result.output
        assert ("meeting.rotated", "cli:rosa@example.com") in rotated_by(settings, meeting_id)
        again = runner.invoke(app, ["meetings", "rotate", meeting_id, "--as", "rosa@example.com"])
        assert again.exit_code == 0  # the same new meeting: a retry is safe
        assert again.stdout.strip().splitlines()[-1] == said

    def test_unsupported_is_a_plain_message_and_exit_1(
        self, settings: Settings, host_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("provisioner.cli._settings", lambda: settings)
        meeting_id, _ = create_meeting(settings, host_headers)
        result = runner.invoke(
            app, ["meetings", "attendance", meeting_id, "--as", "rosa@example.com"]
        )
        assert result.exit_code == 1
        assert "jitsi has no API to list who is in a meeting" in result.output

    def test_bad_input_is_refused_before_anything_runs(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("provisioner.cli._settings", lambda: settings)
        no_email = runner.invoke(app, ["meetings", "lock", "m-1", "--as", "rosa"])
        assert no_email.exit_code == 2 and "give your email address" in no_email.output
        unknown = runner.invoke(app, ["meetings", "lock", "m-1", "--as", "rosa@example.com"])
        assert unknown.exit_code == 1 and "No such meeting: m-1" in unknown.output
