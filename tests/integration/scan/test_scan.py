"""The compliance scan end to end: Zoom and Webex simulators (spec-validated, served on
loopback ports) hold a mix of strong and weak meetings; the scan must flag exactly the
weak ones, and a fix must make a re-scan clean with one audit event per fixed meeting --
through the service, the API, the admin page and the CLI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from provisioner.admin.service import search_audit
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.cli import app as cli
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import MeetingSpec, Person
from provisioner.scan import Weakness, fix_weak_meetings, scan
from provisioner.scan.service import AUDIT_ACTION
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.simulators.webex import WebexSimulator
from tests.simulators.zoom import ZoomSimulator
from tests.support.live import serve_asgi
from tests.support.meeting_fixtures import (
    BROWSER_OIDC,
    SettingsFactory,
    bearer,
    browser_session,
)

HOST = "hanna@example.com"
OTHER = "carl@example.com"
UNTIL = datetime.now(UTC) + timedelta(days=30)
SOON = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
LATER = (datetime.now(UTC) + timedelta(days=3, minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Sims:
    zoom: ZoomSimulator
    webex: WebexSimulator
    zoom_url: str
    webex_url: str
    weak: dict[str, tuple[Weakness, ...]]
    strong: set[str]
    pmi: set[str]

    def provider_settings(self) -> dict[str, Any]:
        return {
            "zoom": {
                "account_id": self.zoom.account_id,
                "client_id": self.zoom.client_id,
                "client_secret": self.zoom.client_secret,
                "api_url": self.zoom_url,
                "oauth_url": self.zoom_url,
                "authentication_option": "signIn_D8cJuqWVQ623CI4Q8yQK0Q",
            },
            "webex": {"api_url": self.webex_url, "access_token": "wsim-static-token"},
        }


def seed(zoom: ZoomSimulator, webex: WebexSimulator, *, with_pmi: bool) -> dict[str, Any]:
    """A mix of strong and weak meetings, none of them made by provisioner."""
    weak: dict[str, tuple[Weakness, ...]] = {}
    strong: set[str] = set()
    pmi: set[str] = set()
    strong.add(str(zoom.add_meeting(HOST, start_time=SOON, password="Str0ngPass")))
    weak[str(zoom.add_meeting(OTHER, start_time=SOON, password=""))] = (Weakness.NO_PASSCODE,)
    weak[
        str(
            zoom.add_meeting(
                OTHER,
                start_time=SOON,
                password="Abc23456xy",
                waiting_room=False,
                meeting_authentication=False,
                join_before_host=True,
            )
        )
    ] = (Weakness.NO_WAITING_ROOM, Weakness.NO_SIGN_IN, Weakness.JOIN_BEFORE_HOST)
    if with_pmi:
        pmi_id = str(zoom.add_meeting(HOST, start_time=SOON, password="Abc23456xy", pmi=True))
        weak[pmi_id] = (Weakness.PERSONAL_MEETING_ID,)
        pmi.add(pmi_id)
    # Far outside the window: not listed at all.
    zoom.add_meeting(OTHER, start_time="2099-01-01T10:00:00Z", password="")
    webex_strong = webex.add_meeting(HOST, start=SOON, end=LATER, password="Wx3kPq9mZt")
    webex_weak = webex.add_meeting(
        HOST, start=SOON, end=LATER, password="", lobby=False, join_before_host=True
    )
    strong.add(f"{webex_strong}_{SOON.replace('-', '').replace(':', '')}")
    weak[f"{webex_weak}_{SOON.replace('-', '').replace(':', '')}"] = (
        Weakness.NO_PASSCODE,
        Weakness.NO_WAITING_ROOM,
        Weakness.JOIN_BEFORE_HOST,
    )
    return {"weak": weak, "strong": strong, "pmi": pmi}


@pytest.fixture(params=[True], ids=["with-pmi"])
def sims(request: pytest.FixtureRequest) -> Iterator[Sims]:
    zoom, webex = ZoomSimulator(), WebexSimulator()
    seeded = seed(zoom, webex, with_pmi=request.param)
    with serve_asgi(zoom) as zoom_url, serve_asgi(webex) as webex_url:
        yield Sims(zoom, webex, zoom_url, webex_url, **seeded)
    assert zoom.violations == []
    assert webex.violations == []


@pytest.fixture
def settings(settings_with: SettingsFactory, jitsi_config: dict[str, Any], sims: Sims) -> Settings:
    return settings_with(
        providers={"jitsi": jitsi_config, **sims.provider_settings()}, oidc=BROWSER_OIDC
    )


def policy(state: AppState) -> Any:
    return effective_for_groups(state.policy, []).settings


class TestScanService:
    async def test_exactly_the_weak_meetings_are_flagged(self, state: AppState, sims: Sims) -> None:
        async with state.db.session() as session:
            report = await scan(
                session, providers=state.providers, policy=policy(state), until=UNTIL
            )

        found = {row.meeting.provider_meeting_id: row for row in report.rows}
        assert set(found) == set(sims.weak) | sims.strong
        assert {k: row.weaknesses for k, row in found.items() if row.weaknesses} == sims.weak
        assert report.unsupported == ("jitsi",)
        assert report.failed == {}
        assert not any(row.managed for row in report.rows)

    async def test_a_meeting_provisioner_created_is_marked_as_such(
        self, state: AppState, sims: Sims
    ) -> None:
        spec = MeetingSpec(
            meeting_id="0b7c9a7e-6d43-4c9f-9a43-0e2f3c1d5a10",
            topic="Quarterly review",
            start=datetime.now(UTC) + timedelta(days=2),
            duration=timedelta(minutes=30),
            timezone="UTC",
            host=Person(HOST, "Hanna Host"),
            invitees=(Person("ann@example.com", "Ann Lee"),),
            settings=policy(state),
        )
        created = await state.providers["zoom"].create(spec, idempotency_key="scan-1")

        async with state.db.session() as session:
            report = await scan(
                session, providers=state.providers, policy=policy(state), until=UNTIL, only="zoom"
            )

        [ours] = [
            r for r in report.rows if r.meeting.provider_meeting_id == created.provider_meeting_id
        ]
        assert ours.managed and ours.meeting.created_by == spec.meeting_id
        assert ours.weaknesses == ()

    async def test_fix_tightens_every_weak_meeting_and_audits_each(
        self, state: AppState, sims: Sims
    ) -> None:
        async with state.db.session() as session:
            report = await scan(
                session, providers=state.providers, policy=policy(state), until=UNTIL
            )
            outcomes, after = await fix_weak_meetings(
                session,
                report,
                providers=state.providers,
                policy=policy(state),
                actor="ivan",
                until=UNTIL,
            )
        async with state.db.session() as session:
            events = await search_audit(session, action=AUDIT_ACTION)

        still_weak = {row.meeting.provider_meeting_id: row.weaknesses for row in after.weak}
        # A personal meeting ID cannot be changed in place; everything else is fixed.
        assert still_weak == {k: (Weakness.PERSONAL_MEETING_ID,) for k in sims.pmi}
        changed = {o.row.meeting.provider_meeting_id for o in outcomes if o.changed}
        assert changed == set(sims.weak) - sims.pmi
        assert {e.target_id.split(":", 1)[1] for e in events} == changed
        assert all(e.actor == "ivan" for e in events)
        passcodes = [m["password"] for m in sims.zoom.meetings.values()] + [
            m["password"] for m in sims.webex.meetings.values()
        ]
        text = json.dumps([e.details for e in events])
        assert not any(p and p in text for p in passcodes)
        no_passcode = [e for e in events if "no_passcode" in e.details["fixed"]]
        assert no_passcode and all(e.details["passcode_added"] for e in no_passcode)


def admin_headers(issuer: LocalIssuer) -> dict[str, str]:
    return bearer(issuer, "ivan", "ivan@example.com", "Ivan Admin", "it-admins")


class TestScanApi:
    async def test_admins_get_the_report_and_the_fix(
        self, client: httpx.AsyncClient, issuer: LocalIssuer, sims: Sims
    ) -> None:
        listed = await client.get("/api/v1/admin/scan", headers=admin_headers(issuer))
        assert listed.status_code == 200
        body = listed.json()
        weak = {r["provider_meeting_id"] for r in body["data"] if r["weaknesses"]}
        assert weak == set(sims.weak)
        assert "password" not in listed.text and "join_url" not in listed.text

        fixed = await client.post("/api/v1/admin/scan/fix", headers=admin_headers(issuer))
        assert fixed.status_code == 200
        assert fixed.json()["weak"] == len(sims.pmi)

    async def test_employees_are_refused(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        assert (await client.get("/api/v1/admin/scan", headers=host_headers)).status_code == 403

    async def test_the_fix_needs_the_write_scope_and_the_report_the_read_scope(
        self, client: httpx.AsyncClient, issuer: LocalIssuer, sims: Sims
    ) -> None:
        def admin(*scopes: str) -> dict[str, str]:
            token = issuer.token(
                subject="ivan",
                email="ivan@example.com",
                name="Ivan Admin",
                groups=["it-admins"],
                scopes=scopes,
            )
            return {"Authorization": f"Bearer {token}"}

        read_only, no_scope = admin("meetings:read"), admin()
        assert (await client.get("/api/v1/admin/scan", headers=read_only)).status_code == 200
        refused = await client.post("/api/v1/admin/scan/fix", headers=read_only)
        assert refused.status_code == 403
        assert "meetings:write" in refused.json()["detail"]
        for path in ("/api/v1/admin/scan", "/api/v1/admin/meetings", "/api/v1/admin/audit"):
            assert (await client.get(path, headers=no_scope)).status_code == 403, path
        # Nothing was fixed: every weak meeting is still weak.
        again = await client.get("/api/v1/admin/scan", headers=read_only)
        weak = {r["provider_meeting_id"] for r in again.json()["data"] if r["weaknesses"]}
        assert weak == set(sims.weak)

    @pytest.mark.parametrize(
        ("query", "field"), [({"days": "0"}, "days"), ({"provider": "nope"}, "provider")]
    )
    async def test_bad_input_is_a_problem_naming_the_field(
        self, client: httpx.AsyncClient, issuer: LocalIssuer, query: dict[str, str], field: str
    ) -> None:
        answer = await client.get("/api/v1/admin/scan", params=query, headers=admin_headers(issuer))
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert field in json.dumps(answer.json().get("errors", []))


def ivan_session(*groups: str) -> tuple[dict[str, str], str]:
    """A signed session as the app's own sign-in would leave it, and its CSRF token."""
    return browser_session("ivan", "ivan@example.com", "Ivan Admin", *groups)


class TestAdminPage:
    async def test_the_page_lists_flags_downloads_and_fixes_with_csrf(
        self, client: httpx.AsyncClient, state: AppState, sims: Sims
    ) -> None:
        headers, csrf = ivan_session("it-admins")

        shown = await client.get("/admin/scan", headers=headers)
        assert shown.status_code == 200
        for meeting_id in sims.weak:
            assert meeting_id in shown.text
        assert f'name="csrf_token" value="{csrf}"' in shown.text
        assert not any(
            m["password"] and m["password"] in shown.text for m in sims.zoom.meetings.values()
        )

        csv_answer = await client.get("/admin/scan.csv", headers=headers)
        assert csv_answer.headers["content-type"].startswith("text/csv")
        assert csv_answer.text.splitlines()[0].startswith("provider,meeting_id,host")
        assert len(csv_answer.text.splitlines()) == 1 + len(sims.weak) + len(sims.strong)

        refused = await client.post("/admin/scan/fix", headers=headers, data={"days": "30"})
        assert refused.status_code == 403
        assert sims.zoom.meetings and all(
            ("PATCH", f"/meetings/{k}") not in sims.zoom.requests for k in sims.weak
        )

        fixed = await client.post(
            "/admin/scan/fix", headers=headers, data={"csrf_token": csrf, "days": "30"}
        )
        assert fixed.status_code == 200
        assert "the host must send the invitation again" in fixed.text
        async with state.db.session() as session:
            events = await search_audit(session, action=AUDIT_ACTION)
        assert len(events) == len(set(sims.weak) - sims.pmi)

    async def test_employees_get_forbidden(self, client: httpx.AsyncClient) -> None:
        headers, _ = ivan_session("employees")
        assert (await client.get("/admin/scan", headers=headers)).status_code == 403


runner = CliRunner()


def write_config(path: Path, settings: Settings) -> Path:
    """The test settings as a TOML file, as an operator would write one."""
    providers: dict[str, Any] = dict(settings.providers)
    lines = [
        f'policy_file = "{settings.policy_file}"',
        "[database]",
        f'url = "{settings.database.url}"',
        "[email]",
        'transport = "file"',
        f'file_dir = "{path.parent / "outbox"}"',
        'sender = "Meetings <meetings@example.com>"',
        "[auth]",
        f'issuer = "{settings.auth.issuer}"',
        f'jwks_file = "{settings.auth.jwks_file}"',
        "[security]",
        f'data_key_file = "{settings.security.data_key_file}"',
    ]
    for name, values in providers.items():
        if values is None:
            continue
        lines.append(f"[providers.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("sims", [False], ids=["no-pmi"], indirect=True)
class TestCli:
    def test_scan_then_fix_then_a_clean_rescan(
        self,
        tmp_path: Path,
        settings: Settings,
        sims: Sims,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("PROVISIONER_CONFIG", str(write_config(tmp_path / "p.toml", settings)))
        report = tmp_path / "scan.csv"

        first = runner.invoke(cli, ["scan", "--format", "csv", "--output", str(report)])
        assert first.exit_code == 1, first.output
        rows = report.read_text().splitlines()[1:]
        flagged = {r.split(",")[1] for r in rows if not r.endswith(",ok")}
        assert flagged == set(sims.weak)

        fixed = runner.invoke(cli, ["scan", "--fix"])
        assert fixed.exit_code == 0, fixed.output
        assert re.search(r"\d+ meetings, 0 with weak settings", fixed.output)
        assert "passcode added: the host must send the invitation again" in fixed.output

        again = runner.invoke(cli, ["scan", "--provider", "zoom"])
        assert again.exit_code == 0, again.output

    def test_usage_errors_exit_2(
        self, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PROVISIONER_CONFIG", str(write_config(tmp_path / "p.toml", settings)))
        assert runner.invoke(cli, ["scan", "--format", "xml"]).exit_code == 2
        unknown = runner.invoke(cli, ["scan", "--provider", "nope"])
        assert unknown.exit_code == 2
        assert "nope" in unknown.output
