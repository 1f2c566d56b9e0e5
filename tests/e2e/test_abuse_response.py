"""Responding to abuse, end to end (the "Must show" of issue #7), on a provider simulator.

Everything real except the provider: the OpenID provider (node), provisioner on a port, the
Webex simulator on another (spec-validated both ways), a real SMTP server (aiosmtpd, STARTTLS
and AUTH) receiving every message, and a real browser for the incident export.

The story, in order:
1. Dana books a Webex meeting through the API with two invitees; the invitations go out.
2. The call runs: Dana, Ana (signed in), Ben (a display name only) and a stranger who signed
   in with an address nobody invited. The attendance check flags exactly the stranger, and
   the watcher alerts the host -- only the host, once, with no join link or passcode.
3. Dana ends the meeting for everyone: the simulator saw it ended.
4. Someone turned join-before-host on in Webex itself; Dana files an incident with a chat
   log attached. The frozen evidence holds the stranger and the settings as read back from
   the simulator (the change included), and its hash checks out.
5. HR/security get the incident notice by email; a responder opens it in the browser, then
   the printable export, which shows the meeting, the stranger and the verified hash
   (screenshot kept under tests/artifacts/). A colleague who is neither gets a 404.
6. Dana rotates the leaked link: the old meeting is deleted in the simulator (the old link
   is dead), every current invitee is sent the new link by email as an update of the same
   calendar entry, and no message sent after the rotation carries the old link or passcode.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner.app import build_state, close_state
from provisioner.incidents.evidence import canonical_json, digest
from provisioner.meetings.watcher import NOTICE_KIND, WatchResult, watch_once
from provisioner.settings import Settings
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import e2e_settings
from tests.e2e.flows import csrf_from, sign_in
from tests.e2e.test_browser import (
    ARTIFACTS,
    page,  # noqa: F401 (the Playwright page fixture)
)
from tests.e2e.test_emergency_links import run
from tests.simulators.webex import SITE, WebexSimulator
from tests.support.app_server import serve_app
from tests.support.live import serve_asgi
from tests.support.oidc_server import OidcServer
from tests.support.smtp import SmtpServer

HR = "hr@example.com"
HOST = "dana@example.com"
INVITEES = [
    {"email": "ana@example.com", "name": "Ana Lima"},
    {"email": "ben@partner.example.org", "name": "Ben Okafor"},
]
STRANGER = ("Mallory Crasher", "mallory@outside.example")
TOPIC = "Quarterly numbers"
SUMMARY = "A stranger joined and shared offensive images"
CHAT_LOG = b"10:02 Mallory Crasher: [offensive image]\n10:03 Dana Host: who are you?\n"


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server accepted it, parsed."""

    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def notice(self) -> str | None:
        value = self.message["X-Provisioner-Notice"]
        return None if value is None else str(value)

    @property
    def text(self) -> str:
        """Every text part decoded (plain, HTML, the .ics unfolded): what a reader can see."""
        parts = []
        for part in self.message.walk():
            if part.get_content_maintype() != "text":
                continue
            content = str(part.get_content()).replace("\r\n", "\n")
            if part.get_content_subtype() == "calendar":
                content = content.replace("\n ", "").replace("\n\t", "")
            parts.append(content)
        return "\n".join(parts)


def received(smtp: SmtpServer, since: int = 0) -> list[Received]:
    found = []
    for item in smtp.handler.messages[since:]:
        message = message_from_bytes(item.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        found.append(Received(item.rcpt_tos, message))
    return found


def calendar_field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:(.+)$", text, re.M)
    assert match, f"no {name} in the invitation's calendar entry"
    return match.group(1).strip()


def drain(settings: Settings) -> int:
    """Send everything queued, as the worker process would; returns how many were sent."""

    async def go() -> int:
        state = build_state(settings)
        try:
            return await state.worker.drain()
        finally:
            await close_state(state)

    sent: int = run(go)
    return sent


def watch(settings: Settings, *, now: datetime) -> WatchResult:
    """One tick of the attendance watcher, at `now` (during the meeting)."""

    async def go() -> WatchResult:
        state = build_state(settings)
        try:
            return await watch_once(
                state.db, state.providers, public_url=settings.api.public_url, now=now
            )
        finally:
            await close_state(state)

    result: WatchResult = run(go)
    return result


@pytest.fixture
def webex_sim() -> Iterator[tuple[WebexSimulator, str]]:
    sim = WebexSimulator(hang_seconds=5.0)
    with serve_asgi(sim) as url:
        yield sim, url


@pytest.fixture
def abuse_settings(
    tmp_path: Path,
    sqlite_template: Path,
    oidc: OidcServer,
    app_port: int,
    webex_sim: tuple[WebexSimulator, str],
    smtp_server: SmtpServer,
) -> Settings:
    sim, url = webex_sim
    # Webex cannot enforce sign-in per meeting (a site setting); the shipped policy refuses
    # it, so this site reports it as not enforced instead (as the hosted-provider tests do).
    shipped = (REPO_ROOT / "config" / "policy.yaml").read_text()
    relaxed = shipped.replace("    enforcement: required\n", "    enforcement: report\n")
    assert relaxed != shipped
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(relaxed)
    return e2e_settings(
        tmp_path,
        sqlite_template,
        oidc,
        app_port,
        default_provider="webex",
        policy_file=policy_file,
        providers={"webex": {"api_url": url, "access_token": "wsim-static-token"}},
        email={
            "transport": "smtp",
            "sender": "Meetings <meetings@example.com>",
            "smtp": smtp_server.settings(),
        },
        incidents={"notify_emails": [HR]},
    )


@pytest.fixture
def abuse_app(abuse_settings: Settings, app_port: int) -> Iterator[str]:
    with serve_app(abuse_settings, port=app_port) as url:
        yield url


def signed_in(app_url: str, login: str) -> tuple[httpx.Client, str]:
    """A browser-like session for `login` and its CSRF token (for the API's writes)."""
    client = httpx.Client(timeout=30.0)
    walk = sign_in(client, app_url, login)
    assert walk.response is not None and walk.response.status_code == 200
    return client, csrf_from(client.get(f"{app_url}/meetings/new").text)


def test_an_intruder_is_caught_reported_and_locked_out(
    page: Any,  # noqa: F811
    abuse_app: str,
    abuse_settings: Settings,
    webex_sim: tuple[WebexSimulator, str],
    smtp_server: SmtpServer,
) -> None:
    app_url = abuse_app
    sim, _ = webex_sim
    dana, csrf = signed_in(app_url, "dana")
    api = f"{app_url}/api/v1"
    write = {"X-CSRF-Token": csrf}

    # 1. The meeting is booked and everyone gets their invitation.
    start = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    created = dana.post(
        f"{api}/meetings",
        headers=write,
        json={
            "topic": TOPIC,
            "start": start.isoformat(),
            "duration_minutes": 60,
            "timezone": "Europe/Lisbon",
            "invitees": INVITEES,
            "provider": "webex",
        },
    )
    assert created.status_code == 201, created.text
    meeting_id = created.json()["id"]
    (old_webex_id,) = sim.meetings
    old_link = sim.meetings[old_webex_id]["webLink"]
    old_passcode = sim.meetings[old_webex_id]["password"]
    assert drain(abuse_settings) == 1 + len(INVITEES)
    invitations = received(smtp_server)
    assert sorted(r for m in invitations for r in m.rcpt_tos) == sorted(
        [HOST, *(i["email"] for i in INVITEES)]
    )
    for invitation in invitations:
        assert old_link in invitation.text and old_passcode in invitation.text
    old_uid = calendar_field(invitations[0].text, "UID")
    old_sequence = int(calendar_field(invitations[0].text, "SEQUENCE"))

    # 2. The call: the host, Ana (signed in), Ben (a typed name) and a stranger.
    sim.join(old_webex_id, name="Dana Host", email=HOST)
    sim.join(old_webex_id, name="Ana Lima", email="ana@example.com", invitee=True)
    sim.join(old_webex_id, name="Ben Okafor")
    stranger_id = sim.join(old_webex_id, name=STRANGER[0], email=STRANGER[1])

    attendance = dana.get(f"{api}/meetings/{meeting_id}/attendance")
    assert attendance.status_code == 200, attendance.text
    by_status = {p["name"]: p["status"] for p in attendance.json()["participants"]}
    assert by_status == {
        "Dana Host": "matched",
        "Ana Lima": "matched",
        "Ben Okafor": "weak",
        STRANGER[0]: "unknown",
    }

    during = start + timedelta(minutes=5)
    assert watch(abuse_settings, now=during).alerts_queued == 1
    assert watch(abuse_settings, now=during + timedelta(minutes=1)).alerts_queued == 0  # once
    mark = len(smtp_server.handler.messages)
    assert drain(abuse_settings) == 1
    (alert,) = received(smtp_server, mark)
    assert alert.rcpt_tos == (HOST,)  # the host alone
    assert alert.notice == NOTICE_KIND
    assert f"{STRANGER[0]} ({STRANGER[1]})" in alert.text
    assert f"{app_url}/meetings/{meeting_id}" in alert.text
    for secret in (old_link, old_passcode, SITE):
        assert secret not in alert.text

    # 3. Dana ends the meeting for everyone.
    ended = dana.post(f"{api}/meetings/{meeting_id}/end", headers=write)
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "ended"
    assert sim.ended == [old_webex_id]

    # 4. Someone had turned join-before-host on in Webex itself; Dana files the report.
    sim.meetings[old_webex_id]["enabledJoinBeforeHost"] = True
    filed = dana.post(
        f"{api}/incidents",
        headers=write,
        json={
            "meeting_id": meeting_id,
            "summary": SUMMARY,
            "statement": "A participant I did not invite joined and shared offensive images.",
            "attachments": [
                {
                    "filename": "chat-log.txt",
                    "content_type": "text/plain",
                    "content_base64": base64.b64encode(CHAT_LOG).decode(),
                }
            ],
        },
    )
    assert filed.status_code == 201, filed.text
    incident = filed.json()
    incident_id = incident["id"]
    evidence = incident["evidence"]
    assert incident["evidence_verified"] is True
    assert digest(canonical_json(evidence)) == incident["evidence_sha256"]
    (unknown,) = [p for p in evidence["participants"]["items"] if p["unknown"]]
    assert (unknown["name"], unknown["email"]) == STRANGER
    assert unknown["provider_participant_id"] == stranger_id
    assert evidence["participants"]["status"] == "read"
    settings_read = evidence["settings"]
    assert settings_read["status"] == "read"
    assert "enabledJoinBeforeHost is on" in settings_read["mismatched"]["join_before_host"]
    assert {"passcode", "waiting_room"} <= set(settings_read["confirmed"])
    assert evidence["meeting"]["provider_meeting_id"] == old_webex_id
    (attachment,) = incident["attachments"]
    assert attachment["sha256"] == hashlib.sha256(CHAT_LOG).hexdigest()
    assert old_link not in filed.text and old_passcode not in filed.text

    # 5. HR/security are told by email, privately and with no way into the meeting.
    mark = len(smtp_server.handler.messages)
    drain(abuse_settings)
    notices = received(smtp_server, mark)
    assert all(n.notice == "incident.filed" for n in notices)
    assert sorted(r for n in notices for r in n.rcpt_tos) == sorted([HOST, HR])
    (to_hr,) = [n for n in notices if n.rcpt_tos == (HR,)]
    assert SUMMARY in to_hr.text
    incident_link = f"{app_url}/incidents/{incident_id}"
    assert re.search(rf"{re.escape(incident_link)}\b(?!/)", to_hr.text)
    for notice in notices:
        for secret in (old_link, old_passcode, SITE):
            assert secret not in notice.text

    # Someone neither reporter nor responder: the export does not exist for them.
    with httpx.Client(timeout=30.0) as erin:
        sign_in(erin, app_url, "erin")
        assert erin.get(f"{incident_link}/export.html").status_code == 404

    # A responder follows the link in HR's email and opens the printable export.
    page.goto(incident_link)
    assert "/auth/login" in page.url
    page.click("#sign-in")
    page.fill("input[name=login]", "rosa")
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.wait_for_url(incident_link)
    page.get_by_role("link", name="Printable report (HTML, print to PDF)").click()
    page.wait_for_url(f"{incident_link}/export.html")
    assert page.locator("h1").inner_text() == SUMMARY
    integrity = page.locator("#integrity")
    assert integrity.is_visible()
    assert "Evidence verified" in integrity.inner_text()
    # The report's own inline styles apply (no second, stricter CSP blocks them).
    border = "e => getComputedStyle(e).borderTopStyle"
    assert integrity.evaluate(border) == "solid"
    assert incident["evidence_sha256"] in integrity.inner_text()
    body = page.inner_text("body")
    assert meeting_id in body and old_webex_id in body
    stranger_row = page.locator("tr", has_text=STRANGER[1])
    assert stranger_row.first.is_visible()
    assert "not invited" in stranger_row.first.inner_text()
    assert "enabledJoinBeforeHost is on" in body
    assert old_link not in page.content() and old_passcode not in page.content()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "incident-export.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the incident export: {shot}")

    # 6. Dana rotates the leaked link.
    mark = len(smtp_server.handler.messages)
    rotated = dana.post(f"{api}/meetings/{meeting_id}/rotate", headers=write, json={})
    assert rotated.status_code == 201, rotated.text
    new_meeting = rotated.json()
    assert new_meeting["id"] != meeting_id
    assert dana.get(f"{api}/meetings/{meeting_id}").json()["state"] == "rotated"
    assert sim.deleted == [old_webex_id] and old_webex_id not in sim.meetings  # link dead
    (new_webex_id,) = sim.meetings
    new_link = sim.meetings[new_webex_id]["webLink"]
    new_passcode = sim.meetings[new_webex_id]["password"]
    assert new_link != old_link and new_passcode != old_passcode
    assert sim.meetings[new_webex_id]["enabledJoinBeforeHost"] is False  # the policy again

    drain(abuse_settings)
    after = received(smtp_server, mark)
    current = {i["email"] for i in new_meeting["invitees"]}
    assert current == {i["email"] for i in INVITEES}
    for email in current:
        (update,) = [m for m in after if m.rcpt_tos == (email,)]
        assert new_link in update.text and new_passcode in update.text
        assert calendar_field(update.text, "UID") == old_uid
        assert int(calendar_field(update.text, "SEQUENCE")) > old_sequence
    for message in after:
        assert old_link not in message.text and old_passcode not in message.text
    assert sim.violations == []
    dana.close()
