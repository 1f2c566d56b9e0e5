"""The incident pages: the report form (multipart, CSRF), the incident page, the exports."""

from __future__ import annotations

import json
import re

import httpx

from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.incidents.conftest import notices
from tests.support.meeting_fixtures import browser_session, created_meeting
from tests.support.smtp import SmtpServer

ANA = ("ana", "ana@example.com", "Ana Lima", "employees")
ROSA = ("rosa", "rosa@example.com", "Rosa Responder", "responders")
ERIN = ("erin", "erin@example.com", "Erin", "employees")


async def file_from_form(client: httpx.AsyncClient, meeting_id: str) -> str:
    cookie, csrf = browser_session(*ANA)
    form = await client.get(f"/incidents/new?meeting={meeting_id}", headers=cookie)
    assert form.status_code == 200, form.text
    assert 'enctype="multipart/form-data"' in form.text
    posted = await client.post(
        "/incidents/new",
        headers=cookie,
        data={
            "csrf_token": csrf,
            "meeting_id": meeting_id,
            "summary": "Harassment in the chat",
            "statement": "Mallory posted insults in the chat at 10:07.",
        },
        files={"attachments": ("chat.txt", b"10:07 Mallory: ...", "text/plain")},
    )
    assert posted.status_code == 303, posted.text
    location = posted.headers["location"]
    assert re.fullmatch(r"/incidents/[0-9a-f-]{36}", location)
    return location.rsplit("/", 1)[1]


async def test_an_invitee_reports_through_the_form_and_security_hears(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
    smtp_server: SmtpServer,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    incident_id = await file_from_form(client, meeting["id"])

    cookie, _ = browser_session(*ANA)
    detail = await client.get(f"/incidents/{incident_id}", headers=cookie)
    assert detail.status_code == 200
    assert "Harassment in the chat" in detail.text
    assert "chat.txt" in detail.text
    assert "Mark triaged" not in detail.text  # the reporter does not work the incident
    await state.worker.drain()
    assert "security@example.com" in notices(smtp_server)


async def test_the_form_refuses_a_missing_csrf_token_and_bad_fields(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    cookie, csrf = browser_session(*ANA)
    fields = {"meeting_id": meeting["id"], "summary": "x", "statement": ""}
    forged = await client.post("/incidents/new", headers=cookie, data=fields)
    assert forged.status_code == 403
    invalid = await client.post(
        "/incidents/new", headers=cookie, data={**fields, "csrf_token": csrf}
    )
    assert invalid.status_code == 422
    assert 'id="summary-error"' in invalid.text and 'id="statement-error"' in invalid.text
    wrong_type = await client.post(
        "/incidents/new",
        headers=cookie,
        data={**fields, "csrf_token": csrf, "summary": "Abuse", "statement": "It happened."},
        files={"attachments": ("a.html", b"<script>", "text/html")},
    )
    assert wrong_type.status_code == 422 and 'id="attachments-error"' in wrong_type.text
    stranger, _ = browser_session(*ERIN)
    assert (
        await client.get(f"/incidents/new?meeting={meeting['id']}", headers=stranger)
    ).status_code == 404


async def test_a_responder_works_it_and_exports_a_self_contained_report(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    incident_id = await file_from_form(client, meeting["id"])
    cookie, csrf = browser_session(*ROSA)

    page = await client.get(f"/incidents/{incident_id}", headers=cookie)
    assert "Mark triaged" in page.text and 'id="provider-notice"' in page.text
    moved = await client.post(
        f"/incidents/{incident_id}/transition",
        headers=cookie,
        data={"csrf_token": csrf, "status": "triaged", "note": "Looking into it."},
    )
    assert moved.status_code == 303
    saved = await client.post(
        f"/incidents/{incident_id}/follow-ups",
        headers=cookie,
        data={
            "csrf_token": csrf,
            "fixes_applied": "rotate-link",
            "law_enforcement_contacted": "no",
            "provider_notice_sent": "on",
        },
    )
    assert saved.status_code == 303

    report = await client.get(f"/incidents/{incident_id}/export.html", headers=cookie)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    # One policy only: the site-wide one (style-src 'self') would block the inline styles.
    [csp] = report.headers.get_list("content-security-policy")
    assert "default-src 'none'" in csp and "style-src 'unsafe-inline'" in csp
    assert "frame-ancestors 'none'" in csp
    html = report.text
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "<style>" in html and "@media print" in html
    assert "Harassment in the chat" in html
    assert "Mallory" in html and "not invited" in html
    assert 'id="incident-status">triaged<' in html
    assert "Looking into it." in html
    assert meeting["host_join"]["url"] not in html
    assert meeting["host_join"]["passcode"] not in html
    exported = await client.get(f"/incidents/{incident_id}/export.json", headers=cookie)
    record = json.loads(exported.text)
    assert record["evidence_sha256"] in html
    assert record["follow_ups"]["law_enforcement_contacted"] is False
    assert record["follow_ups"]["provider_notice_sent_at"] is not None
    assert record["follow_ups"]["fixes_applied"] == ["rotate-link"]

    stranger, _ = browser_session(*ERIN)
    for path in ("", "/export.html", "/export.json"):
        assert (
            await client.get(f"/incidents/{incident_id}{path}", headers=stranger)
        ).status_code == 404


async def test_the_host_completes_the_training_follow_up(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    incident_id = await file_from_form(client, meeting["id"])
    cookie, csrf = browser_session("dana", "dana@example.com", "Dana Host", "employees")

    page = await client.get(f"/incidents/{incident_id}/training", headers=cookie)
    assert page.status_code == 200 and "I have completed the follow-up" in page.text
    assert "Mallory" not in page.text  # the host is not shown the evidence here
    done = await client.post(
        f"/incidents/{incident_id}/training", headers=cookie, data={"csrf_token": csrf}
    )
    assert done.status_code == 303
    after = await client.get(f"/incidents/{incident_id}/training", headers=cookie)
    assert 'id="training-status"' in after.text
    assert (await client.get(f"/incidents/{incident_id}", headers=cookie)).status_code == 404
