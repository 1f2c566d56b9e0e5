"""The floor: the least an endpoint can do and still provision a Zoom meeting.

`POST /floor` makes the same provider calls `ZoomProvider.create` + `.verify` make (create;
then one registrant per invitee alongside the host settings; then the meeting, the host
settings and the registrants read back at once), overlapped as ours overlaps them,
through the same kind of client (`httpx.AsyncClient` on the transport
`provisioner.providers.http.provider_transport` builds), then one database insert through
the same engine set-up (`provisioner.db.create_engine`: on SQLite, one pooled connection).
It runs with the garbage-collector settings ours runs with (`provisioner.heap.settle`),
so that neither side's figures carry a runtime difference. No auth, no policy, no
idempotency, no audit, no encryption: what ours spends beyond this is our overhead.

Run: `python -m bench.floor_app --port 8902 --provider-url http://127.0.0.1:8901
--database-url sqlite+aiosqlite:///floor.db` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import JSON, String, insert
from sqlalchemy.orm import Mapped, mapped_column

from provisioner import heap
from provisioner.db import Base, Database, create_engine
from provisioner.providers.http import default_timeout, provider_transport
from provisioner.providers.overlap import all_of
from provisioner.settings import DatabaseSettings


class FloorMeeting(Base):
    """One row per request: the floor's single insert."""

    __tablename__ = "bench_floor_meetings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider_meeting_id: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


def create_floor(provider_url: str, database_url: str) -> FastAPI:
    """The floor app; its lifespan opens the client and the engine, as ours does."""
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = httpx.AsyncClient(
            base_url=provider_url, transport=provider_transport(), timeout=default_timeout()
        )
        db = Database(create_engine(DatabaseSettings(url=database_url)))
        async with db.engine.begin() as connection:
            table = FloorMeeting.metadata.tables[FloorMeeting.__tablename__]
            await connection.run_sync(table.create, checkfirst=True)
        token = (await client.post("/oauth/token")).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"  # cached, as ours caches it
        holder.update(client=client, db=db)
        heap.settle()  # the collector settings `provisioner serve` uses: the same runtime
        yield
        await client.aclose()
        await db.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/floor", status_code=201)
    async def floor(body: dict[str, Any]) -> dict[str, Any]:
        client: httpx.AsyncClient = holder["client"]
        db: Database = holder["db"]
        host = "host@example.com"
        meeting_id = str(uuid.uuid4())
        created = await client.post(
            f"/users/{host}/meetings",
            json={
                "topic": body["topic"],
                "type": 2,
                "start_time": body["start"],
                "duration": body["duration_minutes"],
                "timezone": body["timezone"],
                "agenda": f"provisioner:{meeting_id}",
                "password": "0123456789",
                "settings": {"waiting_room": True, "approval_type": 0},
            },
        )
        zoom_id = created.json()["id"]

        async def register() -> None:
            for invitee in body["invitees"]:
                await client.post(
                    f"/meetings/{zoom_id}/registrants",
                    json={"email": invitee["email"], "first_name": invitee["name"]},
                )

        # Overlapped exactly as ZoomProvider overlaps them (provisioner.providers.overlap).
        await all_of(register(), client.get(f"/users/{host}/settings"))
        read, _, _ = await all_of(
            client.get(f"/meetings/{zoom_id}"),
            client.get(f"/users/{host}/settings"),
            client.get(f"/meetings/{zoom_id}/registrants"),
        )
        meeting = read.json()
        async with db.session() as session:
            await session.execute(
                insert(FloorMeeting).values(
                    id=meeting_id, provider_meeting_id=str(zoom_id), body=meeting
                )
            )
        return {"id": meeting_id, "join_url": meeting["join_url"]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--provider-url", required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_floor(args.provider_url, args.database_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
