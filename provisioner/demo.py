"""`provisioner demo`: the main flow end to end, on the embedded default, with no servers.

It plays an employee's calendar integration: a local token issuer stands in for SSO, the
API is called in-process, Jitsi is the provider (it needs no API), and mail goes to `.eml`
files. Everything it prints is safe to show: no passcode, token or join link.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
from collections.abc import Callable
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx

from provisioner.app import build_state, close_state, create_app
from provisioner.audit.render import render_events
from provisioner.audit.service import list_events, verify_chain
from provisioner.auth.local_issuer import LocalIssuer
from provisioner.migrate import upgrade_async
from provisioner.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent

INVITEES = [
    {"email": "ana@example.com", "name": "Ana Lima"},
    {"email": "ben@example.com", "name": "Ben Okafor"},
    {"email": "chen@partner.example.org", "name": "Chen Wei"},
]


def demo_settings(directory: Path) -> Settings:
    return Settings(
        database={"url": f"sqlite+aiosqlite:///{directory / 'provisioner.db'}"},
        email={
            "transport": "file",
            "file_dir": directory / "outbox",
            "sender": "Meetings <meetings@example.com>",
        },
        auth={"issuer": "https://idp.demo.invalid", "jwks_file": directory / "jwks.json"},
        security={"data_key_file": directory / "data-key"},
        policy_file=REPO_ROOT / "config" / "policy.yaml",
        worker={"embedded": False},
        providers={
            "jitsi": {
                "base_url": "https://meet.example.com",
                "app_id": "provisioner-demo",
                "domain": "meet.example.com",
                "app_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
        },
    )


async def run_demo(directory: Path, *, out: Callable[[str], Any] = print) -> int:
    """Run the demo in `directory` (wiped first); returns a process exit code."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    settings = demo_settings(directory)
    issuer = LocalIssuer(issuer=settings.auth.issuer)
    issuer.write_jwks(directory / "jwks.json")
    await upgrade_async(settings.database.url)
    state = await asyncio.to_thread(build_state, settings)
    app = create_app(settings, state=state, run_worker=False)
    token = issuer.token(
        subject="dana", email="dana@example.com", name="Dana Host", groups=["employees"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "topic": "Quarterly planning",
        "start": "2030-03-04T15:00:00",
        "duration_minutes": 45,
        "timezone": "Europe/Berlin",
        "invitees": INVITEES,
        "provider": "jitsi",
        "settings": {"chat": "off"},
    }
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://provisioner.demo"
        ) as client:
            out("== 1. Dana asks for a meeting with three invitees (Idempotency-Key: demo-1)")
            first = await client.post(
                "/api/v1/meetings", json=body, headers=headers | {"Idempotency-Key": "demo-1"}
            )
            if first.status_code != 201:
                out(f"unexpected {first.status_code}: {first.text}")
                return 1
            meeting = first.json()
            out(
                f"   201 Created: meeting {meeting['id']} on {meeting['provider']}, "
                f"state {meeting['state']}"
            )

            out("== 2. The calendar retries the same request with the same key")
            again = await client.post(
                "/api/v1/meetings", json=body, headers=headers | {"Idempotency-Key": "demo-1"}
            )
            out(
                f"   {again.status_code}, Idempotent-Replayed: "
                f"{again.headers.get('idempotent-replayed')}, same meeting: "
                f"{again.json()['id'] == meeting['id']}"
            )

            out("== 3. A request that loosens a locked setting is refused, nothing is created")
            loose = body | {"settings": {"join_before_host": True, "waiting_room": False}}
            refused = await client.post("/api/v1/meetings", json=loose, headers=headers)
            problem = refused.json()
            out(f"   {refused.status_code} {refused.headers['content-type']}: {problem['title']}")
            for error in problem.get("errors", []):
                out(f"     - {error['field']}: {error['reason']}")
            listed = (await client.get("/api/v1/meetings", headers=headers)).json()
            out(f"   Dana has {len(listed['data'])} meeting(s)")

            out("== 4. The worker delivers privately: one message per person")
            sent = await state.worker.drain()
            shown = (await client.get(f"/api/v1/meetings/{meeting['id']}", headers=headers)).json()
            out(f"   sent {sent} messages; meeting state {shown['state']}")
            for path in sorted((directory / "outbox").glob("*.eml")):
                message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
                attachments = [part.get_content_type() for part in message.iter_attachments()]
                out(f"   {path}  To: {message['To']}  ({', '.join(attachments)})")

            out("== 5. Effective settings")
            for key, value in shown["settings"].items():
                out(f"   {key:<22} {value}")
            out(f"   enforced by {shown['provider']}: {', '.join(shown['enforced'])}")
            out(
                f"   NOT enforced by {shown['provider']} (told to the host): "
                f"{', '.join(shown['not_enforced']) or 'none'}"
            )

        out("== 6. Audit trail (hash-chained)")
        async with state.db.session() as session:
            out(render_events(await list_events(session, limit=200)))
            report = await verify_chain(session)
        out(f"   chain intact: {report.ok} ({report.events} events)")
        out(f"\nMessages: {directory / 'outbox'}   Database: {directory / 'provisioner.db'}")
        return 0
    finally:
        await close_state(state)
