"""Request to inbox: one private message per person, each with its own link and a valid .ics,
and no secret in any log line, audit row or database file along the way."""

from __future__ import annotations

import io
import logging
from datetime import datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import icalendar
from sqlalchemy import select

from provisioner.audit.models import AuditEvent
from provisioner.audit.service import verify_chain
from provisioner.logs import configure_logging
from provisioner.settings import Settings
from provisioner.state import AppState
from tests.factories import meeting_body


def read_outbox(directory: Path) -> list[EmailMessage]:
    parser = BytesParser(policy=email_policy.default)
    messages = []
    for path in sorted(directory.glob("*.eml")):
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def calendar_of(message: EmailMessage) -> icalendar.Calendar:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return icalendar.Calendar.from_ical(payload)
    raise AssertionError("no text/calendar part")


class TestDeliveredPrivately:
    async def test_one_message_per_person_each_with_own_link(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        created = (
            await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        ).json()
        assert await state.worker.drain() == 4
        messages = read_outbox(settings.email.file_dir)
        assert len(messages) == 4
        recipients = [str(m["To"]) for m in messages]
        assert all(m["Cc"] is None and m["Bcc"] is None for m in messages)
        assert all(r.count("@") == 1 for r in recipients)

        tokens = set()
        for message in messages:
            calendar = calendar_of(message)
            assert str(calendar["METHOD"]) == "REQUEST"
            event = calendar.walk("VEVENT")[0]
            assert isinstance(event, icalendar.Event)
            assert str(event["UID"]) == f"{created['id']}@provisioner"
            assert event.sequence == 0
            assert isinstance(event.start, datetime) and event.start.tzinfo is not None
            attendees = event.get("ATTENDEE")
            assert not isinstance(attendees, list)  # only this recipient
            assert str(attendees).lower() == "mailto:" + message["To"].addresses[0].addr_spec
            url = str(event["URL"])
            tokens.add(parse_qs(urlsplit(url).query)["jwt"][0])
        assert len(tokens) == 4  # everyone, host included, has a personal link

        detail = (
            await client.get(f"/api/v1/meetings/{created['id']}", headers=host_headers)
        ).json()
        assert detail["state"] == "delivered"
        assert {i["delivery_status"] for i in detail["invitees"]} == {"sent"}
        async with state.db.session() as session:
            assert (await verify_chain(session)).ok
            assert "meeting.delivered" in (await session.scalars(select(AuditEvent.action))).all()


class TestNoSecretsAnywhere:
    async def test_full_run_leaks_no_passcode_token_or_link(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        settings: Settings,
    ) -> None:
        stream = io.StringIO()
        configure_logging(level="DEBUG", fmt="json", stream=stream)
        try:
            created = (
                await client.post(
                    "/api/v1/meetings",
                    json=meeting_body(settings={"passcode_min_length": 12}),
                    headers=host_headers | {"Idempotency-Key": "canary"},
                )
            ).json()
            await client.post(
                "/api/v1/meetings",
                json=meeting_body(),
                headers=host_headers | {"Idempotency-Key": "canary"},
            )
            await client.post(
                "/api/v1/meetings",
                json=meeting_body(settings={"join_before_host": True}),
                headers=host_headers,
            )
            await client.post("/api/v1/meetings", json={"topic": 1}, headers=host_headers)
            await client.get("/api/v1/meetings", headers={"Authorization": "Bearer x.y.z"})
            await state.worker.drain()
        finally:
            logging.getLogger().handlers.clear()

        host_url = created["host_join"]["url"]
        secrets = {
            host_url,
            host_url.split("jwt=")[1],
            created["host_join"]["passcode"],
            host_headers["Authorization"].split()[1],
        }
        for message in read_outbox(settings.email.file_dir):
            url = str(calendar_of(message).walk("VEVENT")[0]["URL"])
            secrets |= {url, url.split("jwt=")[1]}
        logs = stream.getvalue()
        assert "meeting.provisioned" in logs  # the capture really saw the run
        async with state.db.session() as session:
            audit = " ".join(
                str(e.details) for e in (await session.scalars(select(AuditEvent))).all()
            )
        raw_db = b""
        if settings.database.is_sqlite:
            db_file = Path(settings.database.url.split("///", 1)[1])
            raw_db = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
        for secret in secrets:
            assert secret not in logs
            assert secret not in audit
            assert secret.encode() not in raw_db
