"""The canary: unique secrets go in, the whole flow runs -- failures included -- and not one
of them comes out in a log line, an audit row, an error body or the database in clear.

Canaries: a provider client secret and a data key (read through the secret store), a
provider API token (read through the store, then echoed back by a failing provider), a
passcode and join URL minted by the provider, and a Jitsi base URL with a canary path
segment (so every Jitsi join link carries it).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from provisioner.app import build_state, close_state, create_app
from provisioner.audit.models import AuditEvent
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.logs import configure_logging
from provisioner.models import Base
from provisioner.providers.base import JoinDetails, MeetingSpec, ProvisionedMeeting
from provisioner.providers.errors import ProviderAuthFailed, ProviderRejected, ProviderRetriable
from provisioner.secrets.base import SecretRef
from tests.conftest import make_settings
from tests.factories import meeting_body
from tests.fakes.provider import FakeProvider


@dataclass
class CanaryProvider(FakeProvider):
    """Mints the canary passcode and join URL for every meeting it creates."""

    canary_url: str = ""
    canary_passcode: str = ""

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        made = await super().create(spec, idempotency_key=idempotency_key)
        join = JoinDetails(url=self.canary_url, passcode=self.canary_passcode)
        return ProvisionedMeeting(
            provider_meeting_id=made.provider_meeting_id,
            host=join,
            shared=join,
            personal={},
            enforced=made.enforced,
        )


# Known gap (reported): the Jitsi provider keeps {"room", "base_url"} in meetings.reference
# in clear for later updates, so the room's address without its token is stored unsealed.
# Every other column is scanned for the canary segment; the raw files for whole links.
UNSEALED_BY_DESIGN = {("meetings", "reference")}


def raw_database(url: str) -> bytes:
    """The SQLite file and its -wal/-shm companions, byte for byte."""
    path = Path(url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def table_text(state: Any) -> str:
    """Every column of every row as text (both backends), minus UNSEALED_BY_DESIGN."""
    chunks: list[str] = []
    async with state.db.session() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) not in UNSEALED_BY_DESIGN]
            for row in (await session.execute(select(*columns))).all():
                chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


class TestCanary:
    async def test_no_canary_escapes(
        self,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        tag = secrets.token_hex(8)
        canary = {
            "app_secret": f"canary-app-secret-{tag}-{secrets.token_hex(16)}",
            "data_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            "provider_token": f"canary-provider-token-{tag}",
            "passcode": f"cpc{tag[:7]}",
            "join_url": f"https://fake.test/canary-join-{tag}",
            "jitsi_segment": f"canary-seg-{tag}",
        }
        monkeypatch.setenv("CANARY_APP_SECRET", canary["app_secret"])
        monkeypatch.setenv("CANARY_DATA_KEY", canary["data_key"])
        monkeypatch.setenv("CANARY_PROVIDER_TOKEN", canary["provider_token"])
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the outbox directory should be")  # SMTP refusal
        settings = make_settings(
            tmp_path,
            database_url,
            issuer,
            jitsi_config
            | {
                "app_secret": "env:CANARY_APP_SECRET",
                "base_url": f"https://meet.example.com/{canary['jitsi_segment']}",
            },
            security={"data_keys": {"k1": "env:CANARY_DATA_KEY"}},
            email={
                "transport": "file",
                "file_dir": blocker / "outbox",
                "sender": "Meetings <meetings@example.com>",
            },
            worker={
                "embedded": False,
                "backoff_base_seconds": 0.001,
                "max_attempts": 2,
                "give_up_after_hours": 0,  # dead-letter after the two attempts alone
            },
        )
        stream = io.StringIO()
        configure_logging(level="DEBUG", fmt="json", stream=stream)
        state = build_state(settings)
        bodies: list[str] = []  # every response not addressed to the meeting's host
        host_bodies: list[dict[str, Any]] = []
        try:
            assert state.secrets is not None
            token = await state.secrets.store.get(SecretRef.parse("env:CANARY_PROVIDER_TOKEN"))
            provider = CanaryProvider(
                canary_url=canary["join_url"],
                canary_passcode=canary["passcode"],
                create_failures=[
                    ProviderRetriable(f"429 from upstream; token {token}", provider="fake"),
                    ProviderAuthFailed(f"401 Bearer {token} expired", provider="fake"),
                    ProviderRejected(f"bad field; we sent {token}", provider="fake"),
                ],
            )
            providers = state.providers
            assert isinstance(providers, dict)
            providers["fake"] = provider
            app = create_app(settings, state=state, run_worker=False)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
            ) as client:

                async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
                    response = await client.request(method, url, **kwargs)
                    bodies.append(response.text + json.dumps(dict(response.headers)))
                    return response

                for _ in range(3):  # three provider failures, each a problem document
                    failed = await call(
                        "POST",
                        "/api/v1/meetings",
                        json=meeting_body(provider="fake"),
                        headers=host_headers,
                    )
                    assert failed.status_code >= 400
                for provider_name in ("fake", "jitsi"):
                    created = await client.post(
                        "/api/v1/meetings",
                        json=meeting_body(provider=provider_name),
                        headers=host_headers | {"Idempotency-Key": f"canary-{provider_name}"},
                    )
                    assert created.status_code == 201, created.text
                    host_bodies.append(created.json())
                fake_meeting, jitsi_meeting = host_bodies
                assert fake_meeting["host_join"]["passcode"] == canary["passcode"]
                assert canary["jitsi_segment"] in jitsi_meeting["host_join"]["url"]

                other = issuer.token(
                    subject="eve", email="eve@example.com", name="Eve", groups=["employees"]
                )
                for meeting in host_bodies:
                    await call(
                        "GET",
                        f"/api/v1/meetings/{meeting['id']}",
                        headers={"Authorization": f"Bearer {other}"},
                    )
                await call("GET", "/api/v1/meetings", headers={"Authorization": "Bearer x.y.z"})
                await call("GET", f"/api/v1/meetings/{fake_meeting['id']}")
                await call("POST", "/api/v1/meetings", json={"topic": 1}, headers=host_headers)
                await call(
                    "POST",
                    "/api/v1/meetings",
                    content=b"{not json",
                    headers=host_headers | {"Content-Type": "application/json"},
                )
                await call(
                    "POST",
                    "/api/v1/meetings",
                    json=meeting_body(settings={"join_before_host": True}),
                    headers=host_headers,
                )
                await call(
                    "POST",
                    "/api/v1/meetings",
                    json=meeting_body(provider="fake", topic="changed"),
                    headers=host_headers | {"Idempotency-Key": "canary-fake"},
                )
                await call("GET", "/readyz")
                await call("GET", "/openapi.json")
                for _ in range(3):
                    await state.worker.drain()  # every send fails: the outbox is blocked
            async with state.db.session() as session:
                audit = "\n".join(
                    json.dumps(
                        [e.actor, e.action, e.target_type, e.target_id, e.details], default=str
                    )
                    for e in (await session.scalars(select(AuditEvent))).all()
                )
            rows = await table_text(state)
            raw = raw_database(settings.database.url) if settings.database.is_sqlite else b""
        finally:
            await close_state(state)
            logging.getLogger().handlers.clear()

        logs = stream.getvalue()
        assert "meeting.provisioned" in logs  # the capture saw the run
        assert "delivery." in logs  # ...and the failed deliveries
        assert "meeting.requested" in audit and "ChannelRetriable" in audit
        host_urls = {m["host_join"]["url"] for m in host_bodies}
        leaks = {**canary, **{f"host_url_{n}": u for n, u in enumerate(host_urls)}}
        for name, value in leaks.items():
            assert value not in logs, f"{name} in logs"
            assert value not in audit, f"{name} in audit"
            for body in bodies:
                assert value not in body, f"{name} in a response body"
        whole = [canary["passcode"], canary["join_url"], canary["app_secret"], canary["data_key"]]
        for value in [*whole, *host_urls]:
            assert value not in rows
            assert value.encode() not in raw
        assert canary["jitsi_segment"] not in rows
