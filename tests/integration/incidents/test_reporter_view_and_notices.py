"""Review fixes: a secret-looking summary or topic never loses a report, a removed invitee
may not report, and a reporter sees only their own part of the record."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy import select, update

from provisioner.auth.local_issuer import LocalIssuer
from provisioner.db import utcnow
from provisioner.delivery.models import Delivery
from provisioner.delivery.notices import NOTICE_ROLE
from provisioner.meetings.models import Invitee
from provisioner.providers.base import Participant
from provisioner.redaction import scrub_text
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.incidents.conftest import notices, report_body
from tests.support.meeting_fixtures import browser_session, created_meeting, text_of
from tests.support.smtp import SmtpServer

ANA = ("ana", "ana@example.com", "Ana Lima", "employees")
LEAKY = "link https://zoom.us/j/1?pwd=abc123secret leaked in the chat"


async def notice_rows(state: AppState, meeting_id: str) -> list[Delivery]:
    async with state.db.session() as session:
        rows = await session.scalars(
            select(Delivery).where(Delivery.meeting_id == meeting_id, Delivery.role == NOTICE_ROLE)
        )
        return list(rows)


async def test_a_summary_with_a_join_link_is_filed_and_notified(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    invitee_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
    smtp_server: SmtpServer,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    response = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"], summary=LEAKY), headers=invitee_headers
    )
    assert response.status_code == 201, response.text
    assert "abc123secret" not in response.json()["summary"]
    assert len(await notice_rows(state, meeting["id"])) == 3
    await state.worker.drain()
    sent = notices(smtp_server)
    assert {"security@example.com", "mgr@example.com", "dana@example.com"} <= set(sent)
    assert all("abc123secret" not in m.as_string() for m in sent.values())


async def test_a_topic_with_a_token_does_not_block_reports(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    invitee_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
    smtp_server: SmtpServer,
) -> None:
    meeting = await created_meeting(
        client, host_headers, provider="fake", topic="Sync (see https://x.test/?token=t0ps3cret)"
    )
    response = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=invitee_headers
    )
    assert response.status_code == 201, response.text
    assert len(await notice_rows(state, meeting["id"])) == 3
    await state.worker.drain()
    security = notices(smtp_server)["security@example.com"]
    assert "t0ps3cret" not in security.as_string()
    assert "Open the incident" in text_of(security)


async def test_a_removed_invitee_may_not_report(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    invitee_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    async with state.db.session() as session:
        await session.execute(
            update(Invitee)
            .where(Invitee.meeting_id == meeting["id"], Invitee.email == "ana@example.com")
            .values(removed_at=utcnow())
        )
    response = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=invitee_headers
    )
    assert response.status_code == 404, response.text


async def test_the_reporter_sees_only_their_own_part(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    invitee_headers: dict[str, str],
    responder_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    filed = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=invitee_headers
    )
    assert filed.status_code == 201, filed.text
    incident_id = filed.json()["id"]
    note = await client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        json={"body": "Responder-only: Mallory is a known troll"},
        headers=responder_headers,
    )
    assert note.status_code == 201, note.text
    follow = await client.patch(
        f"/api/v1/incidents/{incident_id}/follow-ups",
        json={"law_enforcement_contacted": True, "law_enforcement_reference": "CASE-4711"},
        headers=responder_headers,
    )
    assert follow.status_code == 200, follow.text
    # The responder still sees everything.
    full = follow.json()
    assert full["evidence"]["participants"]["items"] and full["evidence"]["invitees"]
    assert full["notes"] and full["provider_notice"]["body"]

    mine = (await client.get(f"/api/v1/incidents/{incident_id}", headers=invitee_headers)).json()
    evidence = mine["evidence"]
    assert evidence["statement"]["summary"] == "An uninvited guest shared offensive images"
    assert mine["status"] == "new" and len(mine["attachments"]) == 1
    assert evidence["participants"]["status"] == "withheld"
    assert evidence["invitees"] == evidence["deliveries"] == evidence["audit_trail"] == []
    assert evidence["timeline"] == [] and evidence["settings"]["status"] == "withheld"
    assert mine["notes"] == [] and mine["provider_notice"]["body"] == ""
    assert mine["follow_ups"]["law_enforcement_reference"] is None
    text = str(mine)
    for secret in ("ben@example.com", "chen@partner.example.org", "CASE-4711", "known troll"):
        assert secret not in text

    notice = await client.get(
        f"/api/v1/incidents/{incident_id}/provider-notice", headers=invitee_headers
    )
    assert notice.status_code == 403

    cookie, _ = browser_session(*ANA)
    for path in ("", "/export.html", "/export.json"):
        page = await client.get(f"/incidents/{incident_id}{path}", headers=cookie)
        assert page.status_code == 200, (path, page.text)
        for secret in ("ben@example.com", "chen@partner.example.org", "CASE-4711", "known troll"):
            assert secret not in page.text, (path, secret)
        assert "An uninvited guest shared offensive images" in page.text


async def test_join_secrets_are_scrubbed_for_the_report_only(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    responder_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    join = meeting["host_join"]
    filed = await client.post(
        "/api/v1/incidents",
        json=report_body(
            meeting["id"], statement=f"The link {join['url']} ({join['passcode']}) leaked."
        ),
        headers=host_headers,
    )
    assert filed.status_code == 201, filed.text
    full = await client.get(f"/api/v1/incidents/{filed.json()['id']}", headers=responder_headers)
    text = full.json()["evidence"]["statement"]["text"]
    assert join["url"] not in text and join["passcode"] not in text and "[redacted]" in text
    # Nothing about this meeting was added to the process-wide registry.
    unrelated = f"log line mentioning {join['passcode']}"
    assert scrub_text(unrelated) == unrelated


async def test_a_naive_participant_time_is_taken_as_utc(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    responder_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    naive = datetime(2026, 1, 5, 10, 5)  # no offset, as some providers send it
    fake.participants = [
        Participant(name="Mallory", email=None, provider_participant_id="p2", joined_at=naive)
    ]
    meeting = await created_meeting(client, host_headers, provider="fake")
    filed = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=host_headers
    )
    assert filed.status_code == 201, filed.text
    full = await client.get(f"/api/v1/incidents/{filed.json()['id']}", headers=responder_headers)
    assert "Mallory (not invited) joined" in [
        e["event"] for e in full.json()["evidence"]["timeline"]
    ]


async def test_saving_follow_ups_again_keeps_when_the_notice_was_sent(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    responder_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    filed = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=host_headers
    )
    incident_id = filed.json()["id"]
    path = f"/api/v1/incidents/{incident_id}/follow-ups"
    first = await client.patch(path, json={"provider_notice_sent": True}, headers=responder_headers)
    sent_at = first.json()["follow_ups"]["provider_notice_sent_at"]
    assert sent_at
    again = await client.patch(
        path,
        json={"provider_notice_sent": True, "law_enforcement_contacted": False},
        headers=responder_headers,
    )
    assert again.json()["follow_ups"]["provider_notice_sent_at"] == sent_at
    cleared = await client.patch(
        path, json={"provider_notice_sent": False}, headers=responder_headers
    )
    assert cleared.json()["follow_ups"]["provider_notice_sent_at"] is None


async def test_a_read_only_token_cannot_file_or_work_a_report(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    issuer: LocalIssuer,
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    token = issuer.token(
        subject="dana",
        email="dana@example.com",
        name="Dana Host",
        groups=["employees", "responders"],
        scopes=("meetings:read",),
    )
    read_only = {"Authorization": f"Bearer {token}"}
    refused = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=read_only
    )
    assert refused.status_code == 403, refused.text
    filed = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=host_headers
    )
    incident_id = filed.json()["id"]
    assert (await client.get(f"/api/v1/incidents/{incident_id}", headers=read_only)).is_success
    for method, path, body in (
        ("POST", "/notes", {"body": "x"}),
        ("POST", "/transitions", {"status": "triaged"}),
        ("PATCH", "/follow-ups", {"provider_notice_sent": True}),
        ("POST", "/training/acknowledge", None),
    ):
        response = await client.request(
            method, f"/api/v1/incidents/{incident_id}{path}", json=body, headers=read_only
        )
        assert response.status_code == 403, (path, response.text)


async def test_a_host_reporter_sees_the_snapshot_but_not_the_responders_work(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    responder_headers: dict[str, str],
    fake: FakeProvider,
) -> None:
    meeting = await created_meeting(client, host_headers, provider="fake")
    filed = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=host_headers
    )
    incident_id = filed.json()["id"]
    await client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        json={"body": "Responder-only: known troll"},
        headers=responder_headers,
    )
    mine = (await client.get(f"/api/v1/incidents/{incident_id}", headers=host_headers)).json()
    assert mine["evidence"]["participants"]["status"] == "read"
    assert mine["notes"] == [] and mine["provider_notice"]["body"] == ""
    notice = await client.get(
        f"/api/v1/incidents/{incident_id}/provider-notice", headers=host_headers
    )
    assert notice.status_code == 403


async def test_a_later_report_carries_no_notice_of_an_earlier_one(
    client: httpx.AsyncClient,
    host_headers: dict[str, str],
    invitee_headers: dict[str, str],
    state: AppState,
    fake: FakeProvider,
) -> None:
    # Ana reports; her manager and security are told. The host may not read her report,
    # so the host's own report must not show those notices (nor their audit events).
    meeting = await created_meeting(client, host_headers, provider="fake")
    by_ana = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"]), headers=invitee_headers
    )
    assert by_ana.status_code == 201
    await state.worker.drain()
    earlier = {row.id for row in await notice_rows(state, meeting["id"])}
    assert earlier  # the manager's and security's notices exist

    by_host = await client.post(
        "/api/v1/incidents", json=report_body(meeting["id"], attachments=[]), headers=host_headers
    )

    assert by_host.status_code == 201, by_host.text
    evidence = by_host.json()["evidence"]
    assert {d["role"] for d in evidence["deliveries"]} <= {"host", "invitee"}
    assert evidence["deliveries"]  # the invitations are still the record
    assert not earlier & {e["target_id"] for e in evidence["audit_trail"]}
    assert "mgr@example.com" not in by_host.text
