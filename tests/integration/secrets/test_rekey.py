"""`rotate-key`: every sealed column re-encrypted under the new key, still readable through
the app, idempotent, audited -- on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from provisioner.app import build_state, close_state, create_app
from provisioner.audit.models import AuditEvent
from provisioner.audit.service import verify_chain
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.crypto import FieldCipher
from provisioner.idempotency.models import IdempotencyKey
from provisioner.meetings.models import Invitee, Meeting
from provisioner.secrets.rekey import rekey_all
from provisioner.state import AppState
from tests.conftest import make_settings
from tests.factories import meeting_body


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


async def sealed_values(state: AppState) -> list[str]:
    async with state.db.session() as session:
        values = [
            *(await session.scalars(select(Meeting.host_join_secret))).all(),
            *(await session.scalars(select(Invitee.join_secret))).all(),
            *(await session.scalars(select(IdempotencyKey.response_secret))).all(),
        ]
    return [v for v in values if v is not None]


class TestRotateKey:
    async def test_reencrypts_everything_online_and_idempotently(
        self,
        tmp_path: Path,
        database_url: str,
        issuer: LocalIssuer,
        jitsi_config: dict[str, Any],
        host_headers: dict[str, str],
    ) -> None:
        k1, k2 = new_key(), new_key()
        old = make_settings(
            tmp_path, database_url, issuer, jitsi_config, security={"data_keys": {"k1": k1}}
        )
        state = build_state(old)
        app = create_app(old, state=state, run_worker=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
        ) as client:
            created = []
            for n in range(3):
                response = await client.post(
                    "/api/v1/meetings",
                    json=meeting_body(),
                    headers=host_headers | {"Idempotency-Key": f"rekey-{n}"},
                )
                assert response.status_code == 201
                created.append(response.json())
        before = await sealed_values(state)
        assert before and all(v.startswith("v1.k1.") for v in before)
        await close_state(state)

        new = make_settings(
            tmp_path,
            database_url,
            issuer,
            jitsi_config,
            security={"data_keys": {"k1": k1, "k2": k2}, "active_key": "k2"},
        )
        state = build_state(new)
        try:
            cipher = FieldCipher(
                {"k1": base64.b64decode(k1), "k2": base64.b64decode(k2)}, active="k2"
            )
            report = await rekey_all(
                state.db, cipher=cipher, key_id="k2", actor="test", batch_size=2
            )
            assert report.complete
            assert sum(report.rotated.values()) == len(before)
            after = await sealed_values(state)
            assert len(after) == len(before) and all(v.startswith("v1.k2.") for v in after)

            again = await rekey_all(state.db, cipher=cipher, key_id="k2", actor="test")
            assert sum(again.rotated.values()) == 0

            # The old key can go: everything opens with k2 alone, through the app.
            only_k2 = make_settings(
                tmp_path,
                database_url,
                issuer,
                jitsi_config,
                security={"data_keys": {"k2": k2}, "active_key": "k2"},
            )
            await close_state(state)
            state = build_state(only_k2)
            app = create_app(only_k2, state=state, run_worker=False)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://provisioner.test"
            ) as client:
                for meeting in created:
                    detail = await client.get(
                        f"/api/v1/meetings/{meeting['id']}", headers=host_headers
                    )
                    assert detail.json()["host_join"] == meeting["host_join"]
                replay = await client.post(
                    "/api/v1/meetings",
                    json=meeting_body() | {"start": created[0]["start"]},
                    headers=host_headers | {"Idempotency-Key": "rekey-0"},
                )
                assert replay.status_code in (201, 422)  # replayed or refused, never a 500
                assert await state.worker.drain() > 0  # deliveries open their invitee rows
            async with state.db.session() as session:
                actions = (await session.scalars(select(AuditEvent.action))).all()
                assert actions.count("secrets.rekey_finished") == 2
                finished = (
                    await session.scalars(
                        select(AuditEvent).where(AuditEvent.action == "secrets.rekey_finished")
                    )
                ).all()
                assert sum(c["rotated"] for c in finished[0].details["columns"]) == len(before)
                assert (await verify_chain(session)).ok
        finally:
            await close_state(state)

    async def test_unreadable_rows_are_reported_not_overwritten(
        self,
        tmp_path: Path,
        state: AppState,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
    ) -> None:
        response = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        assert response.status_code == 201
        stranger = FieldCipher({"k9": secrets.token_bytes(32)}, active="k9")
        report = await rekey_all(state.db, cipher=stranger, key_id="k9", actor="test")
        assert not report.complete
        assert report.unreadable["meetings.host_join_secret"] == 1
        assert all(v.startswith("v1.dev.") for v in await sealed_values(state))
