"""Incident reports over the API: evidence, notices, access, tampering, workflow, follow-ups."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select, text, update

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import event_digest as audit_digest
from provisioner.incidents.evidence import canonical_json, digest
from provisioner.incidents.models import Incident, IncidentAttachment
from provisioner.policy.model import Control
from provisioner.providers.base import MeetingRef, MeetingSpec, ObservedSettings, ProvisionedMeeting
from provisioner.providers.errors import ProviderRetriable
from provisioner.state import AppState
from tests.fakes.provider import FakeProvider
from tests.integration.incidents.conftest import notices, report_body
from tests.support.meeting_fixtures import actions_of, created_meeting, text_of
from tests.support.smtp import SmtpServer


async def file_report(
    client: httpx.AsyncClient, headers: dict[str, str], meeting_id: str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/incidents", json=report_body(meeting_id, **overrides), headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def responder_read(
    client: httpx.AsyncClient, responder_headers: dict[str, str], incident_id: str
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/incidents/{incident_id}", headers=responder_headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def filed_incident(
    client: httpx.AsyncClient, host_headers: dict[str, str], invitee_headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meeting, incident): a meeting on the fake provider and the invitee's report on it."""
    meeting = await created_meeting(client, host_headers, provider="fake")
    return meeting, await file_report(client, invitee_headers, meeting["id"])


class TestFiling:
    async def test_an_invitee_report_freezes_the_evidence(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        join = meeting["host_join"]
        # Someone turned the waiting room off at the provider after creation.
        fake.mismatch = {Control.WAITING_ROOM: "the waiting room is off"}

        filed = await file_report(client, invitee_headers, meeting["id"])
        # The whole snapshot is for responders (the reporter's own view is tested apart).
        response = await client.get(f"/api/v1/incidents/{filed['id']}", headers=responder_headers)
        assert response.status_code == 200, response.text
        incident = response.json()

        evidence = incident["evidence"]
        assert incident["status"] == "new" and incident["evidence_verified"] is True
        assert incident["evidence_sha256"] == digest(canonical_json(evidence))
        assert evidence["reporter"] == {
            "subject": "ana",
            "email": "ana@example.com",
            "name": "Ana Lima",
            "role": "invitee",
        }
        assert evidence["settings"]["status"] == "read"
        assert evidence["settings"]["mismatched"] == {"waiting_room": "the waiting room is off"}
        people = {p["name"]: p for p in evidence["participants"]["items"]}
        assert people["Ana Lima"]["match"] == "email" and not people["Ana Lima"]["unknown"]
        assert people["Mallory"]["unknown"] is True
        assert {i["email"] for i in evidence["invitees"]} == {
            "ana@example.com",
            "ben@example.com",
            "chen@partner.example.org",
        }
        assert {d["role"] for d in evidence["deliveries"]} >= {"host", "invitee"}
        assert {e["target_id"] for e in evidence["audit_trail"]} >= {meeting["id"]}
        events = [entry["event"] for entry in evidence["timeline"]]
        assert events.index("meeting requested") < events.index("incident reported")
        assert [entry["at"] for entry in evidence["timeline"]] == sorted(
            (entry["at"] for entry in evidence["timeline"]), key=datetime.fromisoformat
        )
        [attachment] = incident["attachments"]
        assert attachment["sha256"] == hashlib.sha256(b"\x89PNG fake screenshot").hexdigest()
        assert evidence["attachments"][0]["sha256"] == attachment["sha256"]
        codes = {fix["code"] for fix in incident["suggested_fixes"]}
        assert {"rotate-link", "restore-waiting_room", "identify-by-sign-in"} <= codes
        # No join secret anywhere in what the reporter (an invitee, not the host) sees.
        assert join["url"] not in str(incident) and join["passcode"] not in str(incident)
        assert await actions_of(state, incident["id"]) == ["incident.filed"]

    async def test_a_pasted_join_link_is_scrubbed_from_the_statement(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        join = meeting["host_join"]
        incident = await file_report(
            client,
            host_headers,
            meeting["id"],
            statement=f"The link {join['url']} with passcode {join['passcode']} leaked.",
        )
        text = incident["evidence"]["statement"]["text"]
        assert join["url"] not in text and join["passcode"] not in text
        assert "[redacted]" in text
        assert incident["evidence"]["reporter"]["role"] == "host"

    async def test_a_failed_provider_read_is_recorded_not_fatal(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        responder_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        class Unreachable(FakeProvider):
            async def verify(
                self, spec: MeetingSpec, created: ProvisionedMeeting
            ) -> ObservedSettings:
                raise ProviderRetriable("503 from the provider", provider="fake")

            async def list_participants(self, meeting: MeetingRef) -> list[Any]:
                raise ProviderRetriable("503 from the provider", provider="fake")

        meeting = await created_meeting(client, host_headers, provider="fake")
        state.providers = {"fake": Unreachable()}

        filed = await file_report(client, host_headers, meeting["id"])
        incident = await responder_read(client, responder_headers, filed["id"])

        evidence = incident["evidence"]
        assert evidence["settings"]["status"] == "unavailable"
        assert "503" in evidence["settings"]["reason"]
        assert evidence["participants"]["status"] == "unavailable"
        assert "check-settings-by-hand" in {f["code"] for f in incident["suggested_fixes"]}

    async def test_jitsi_settings_are_verified_and_its_missing_participant_list_is_said(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
    ) -> None:
        created = await created_meeting(client, host_headers, provider="jitsi")

        filed = await file_report(client, invitee_headers, created["id"])
        incident = await responder_read(client, responder_headers, filed["id"])

        evidence = incident["evidence"]
        assert evidence["settings"]["status"] == "read", evidence["settings"]
        assert evidence["settings"]["mismatched"] == {}
        assert evidence["participants"]["status"] in {"unsupported", "read"}


class TestBadInput:
    async def test_limits_name_the_field(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        meeting = await created_meeting(client, host_headers, provider="fake")
        cases = [
            (
                [
                    {
                        "filename": "x.exe",
                        "content_type": "application/x-msdownload",
                        "content_base64": base64.b64encode(b"MZ").decode(),
                    }
                ],
                "attachments[0].content_type",
            ),
            (
                [{"filename": "x.png", "content_type": "image/png", "content_base64": "@@@"}],
                "attachments[0].content_base64",
            ),
            (
                [
                    {
                        "filename": "big.png",
                        "content_type": "image/png",
                        "content_base64": base64.b64encode(b"x" * 5000).decode(),
                    }
                ],
                "attachments[0]",
            ),
        ]
        for attachments, field in cases:
            response = await client.post(
                "/api/v1/incidents",
                json=report_body(meeting["id"], attachments=attachments),
                headers=host_headers,
            )
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in response.json()["errors"]] == [field]
        missing = await client.post(
            "/api/v1/incidents", json={"meeting_id": meeting["id"]}, headers=host_headers
        )
        assert missing.status_code == 422
        assert {e["field"] for e in missing.json()["errors"]} == {"summary", "statement"}


class TestNotices:
    async def test_host_manager_and_security_are_told_privately(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
        smtp_server: SmtpServer,
    ) -> None:
        meeting, incident = await filed_incident(client, host_headers, invitee_headers)
        join = meeting["host_join"]

        await state.worker.drain()

        received = notices(smtp_server)
        assert set(received) == {"dana@example.com", "mgr@example.com", "security@example.com"}
        security = text_of(received["security@example.com"])
        assert f"https://provisioner.example.com/incidents/{incident['id']}" in security
        assert "An uninvited guest shared offensive images" in security
        host = text_of(received["dana@example.com"])
        assert f"/incidents/{incident['id']}/training" in host
        manager = text_of(received["mgr@example.com"])
        assert "/incidents/" not in manager  # the manager may not open the report
        for message in received.values():
            raw = message.as_string()
            assert join["url"] not in raw and join["passcode"] not in raw
            assert message["X-Provisioner-Notice"] == "incident.filed"


class TestAccess:
    async def test_only_the_reporter_and_responders_see_it(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        stranger_headers: dict[str, str],
        fake: FakeProvider,
    ) -> None:
        meeting, incident = await filed_incident(client, host_headers, invitee_headers)
        url = f"/api/v1/incidents/{incident['id']}"

        assert (await client.get(url, headers=invitee_headers)).status_code == 200
        assert (await client.get(url, headers=responder_headers)).status_code == 200
        for outsider in (stranger_headers, host_headers):  # the host did not report it
            response = await client.get(url, headers=outsider)
            assert response.status_code == 404
            assert response.json()["type"].endswith("incident-not-found")
        assert (
            await client.get("/api/v1/incidents/nope", headers=stranger_headers)
        ).status_code == 404
        assert (await client.get("/api/v1/incidents", headers=stranger_headers)).json()[
            "items"
        ] == []
        listed = (await client.get("/api/v1/incidents", headers=responder_headers)).json()
        assert [i["id"] for i in listed["items"]] == [incident["id"]]
        # Someone neither host nor invitee cannot report on the meeting (or learn it exists).
        refused = await client.post(
            "/api/v1/incidents", json=report_body(meeting["id"]), headers=stranger_headers
        )
        assert refused.status_code == 404
        # The reporter reads but does not work the incident.
        worked = await client.post(
            f"{url}/transitions", json={"status": "triaged"}, headers=invitee_headers
        )
        assert worked.status_code == 403


class TestTampering:
    async def _filed(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
    ) -> str:
        _, incident = await filed_incident(client, host_headers, invitee_headers)
        return str(incident["id"])

    async def _refused(
        self, client: httpx.AsyncClient, headers: dict[str, str], state: AppState, incident_id: str
    ) -> None:
        for path in ("", "/provider-notice"):
            response = await client.get(f"/api/v1/incidents/{incident_id}{path}", headers=headers)
            assert response.status_code == 500
            problem = response.json()
            assert problem["type"].endswith("evidence-tampered")
            assert "evidence" not in problem and "statement" not in response.text
        assert "incident.evidence_tampered" in await actions_of(state, incident_id)

    async def test_a_changed_snapshot_is_refused(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        incident_id = await self._filed(client, host_headers, invitee_headers)
        async with state.db.session() as session:
            row = await session.get(Incident, incident_id)
            assert row is not None
            row.evidence_json = row.evidence_json.replace("Mallory", "Marvin")
        await self._refused(client, responder_headers, state, incident_id)

    async def test_a_snapshot_rewritten_with_its_hash_is_still_caught(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        incident_id = await self._filed(client, host_headers, invitee_headers)
        async with state.db.session() as session:
            row = await session.get(Incident, incident_id)
            assert row is not None
            forged = row.evidence_json.replace("Mallory", "Marvin")
            row.evidence_json, row.evidence_sha256 = forged, digest(forged)
        await self._refused(client, responder_headers, state, incident_id)

    async def test_a_forged_audit_record_of_the_filing_is_caught(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        """Rewriting the snapshot, its hash and the filing's audit details (even with the
        event's own hash recomputed) does not fit the audit chain."""
        incident_id = await self._filed(client, host_headers, invitee_headers)
        # Another event after the filing, so the forged one has a successor to disagree with.
        noted = await client.post(
            f"/api/v1/incidents/{incident_id}/notes",
            json={"body": "Looking into it."},
            headers=responder_headers,
        )
        assert noted.status_code == 201, noted.text
        async with state.db.session() as session:
            row = await session.get(Incident, incident_id)
            assert row is not None
            forged = row.evidence_json.replace("Mallory", "Marvin")
            row.evidence_json, row.evidence_sha256 = forged, digest(forged)
            event = await session.scalar(
                select(AuditEvent).where(
                    AuditEvent.target_id == incident_id, AuditEvent.action == "incident.filed"
                )
            )
            assert event is not None
            details = {**event.details, "evidence_sha256": digest(forged)}
            rehashed = audit_digest(
                prev_hash=event.prev_hash,
                occurred_at=event.occurred_at,
                actor=event.actor,
                action=event.action,
                target_type=event.target_type,
                target_id=event.target_id,
                details=details,
            )
            await session.execute(
                text("UPDATE audit_events SET details = :d, hash = :h WHERE id = :i"),
                {"d": json.dumps(details), "h": rehashed, "i": event.id},
            )
        await self._refused(client, responder_headers, state, incident_id)

    async def test_a_changed_attachment_is_refused(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        incident_id = await self._filed(client, host_headers, invitee_headers)
        async with state.db.session() as session:
            await session.execute(
                update(IncidentAttachment)
                .where(IncidentAttachment.incident_id == incident_id)
                .values(content=b"something else")
            )
        await self._refused(client, invitee_headers, state, incident_id)


class TestWorkflow:
    async def test_responders_triage_note_and_resolve_in_order(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        _, incident = await filed_incident(client, host_headers, invitee_headers)
        url = f"/api/v1/incidents/{incident['id']}"

        skipped = await client.post(
            f"{url}/transitions", json={"status": "resolved"}, headers=responder_headers
        )
        assert skipped.status_code == 409
        triaged = await client.post(
            f"{url}/transitions",
            json={"status": "triaged", "note": "Confirmed with the host."},
            headers=responder_headers,
        )
        assert triaged.status_code == 200 and triaged.json()["status"] == "triaged"
        noted = await client.post(
            f"{url}/notes", json={"body": "Provider notified."}, headers=responder_headers
        )
        assert noted.status_code == 201
        resolved = await client.post(
            f"{url}/transitions", json={"status": "resolved"}, headers=responder_headers
        )
        body = resolved.json()
        assert body["status"] == "resolved"
        assert [(n["from_status"], n["to_status"], n["body"]) for n in body["notes"]] == [
            ("new", "triaged", "Confirmed with the host."),
            (None, None, "Provider notified."),
            ("triaged", "resolved", "Marked resolved."),
        ]
        again = await client.post(
            f"{url}/transitions", json={"status": "resolved"}, headers=responder_headers
        )
        assert again.status_code == 409
        assert await actions_of(state, incident["id"]) == [
            "incident.filed",
            "incident.triaged",
            "incident.note_added",
            "incident.resolved",
        ]
        # The evidence did not move while the incident was worked.
        assert body["evidence_sha256"] == incident["evidence_sha256"]


class TestFollowUps:
    async def test_follow_ups_are_recorded_and_the_host_acknowledges_training(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        invitee_headers: dict[str, str],
        responder_headers: dict[str, str],
        stranger_headers: dict[str, str],
        state: AppState,
        fake: FakeProvider,
    ) -> None:
        meeting, incident = await filed_incident(client, host_headers, invitee_headers)
        url = f"/api/v1/incidents/{incident['id']}"

        unknown = await client.patch(
            f"{url}/follow-ups", json={"fixes_applied": ["make-it-safe"]}, headers=responder_headers
        )
        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["field"] == "fixes_applied[0]"
        no_police = await client.patch(
            f"{url}/follow-ups",
            json={"law_enforcement_reference": "CASE-1"},
            headers=responder_headers,
        )
        assert no_police.status_code == 422
        assert no_police.json()["errors"][0]["field"] == "law_enforcement_reference"

        notice = (await client.get(f"{url}/provider-notice", headers=responder_headers)).json()
        assert incident["evidence"]["meeting"]["provider_meeting_id"] in notice["body"]
        assert "Mallory" in notice["body"]
        assert meeting["host_join"]["passcode"] not in notice["body"]

        done = await client.patch(
            f"{url}/follow-ups",
            json={
                "fixes_applied": ["rotate-link"],
                "law_enforcement_contacted": True,
                "law_enforcement_reference": "CASE-2026-0042",
                "provider_notice_sent": True,
            },
            headers=responder_headers,
        )
        assert done.status_code == 200, done.text
        follow_ups = done.json()["follow_ups"]
        assert follow_ups["fixes_applied"] == ["rotate-link"]
        assert follow_ups["law_enforcement_reference"] == "CASE-2026-0042"
        assert follow_ups["provider_notice_sent_at"] is not None
        assert follow_ups["training_acknowledged_at"] is None
        assert {f["code"]: f["applied"] for f in done.json()["suggested_fixes"]}["rotate-link"]

        # The host sees the training request (not the evidence) and completes it.
        assert (await client.get(f"{url}/training", headers=stranger_headers)).status_code == 404
        training = (await client.get(f"{url}/training", headers=host_headers)).json()
        assert training["acknowledged_at"] is None
        assert training["training_url"] == "https://learn.example.com/meeting-safety"
        acked = await client.post(f"{url}/training/acknowledge", headers=host_headers)
        assert acked.status_code == 200 and acked.json()["acknowledged_at"] is not None

        final = (await client.get(url, headers=responder_headers)).json()["follow_ups"]
        assert final["training_acknowledged_at"] is not None
        assert (await actions_of(state, incident["id"]))[-1] == "incident.training_acknowledged"
