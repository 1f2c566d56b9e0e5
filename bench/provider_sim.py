"""A lean Zoom-shaped provider simulator for benchmarks, with a fixed injected latency.

The test simulator (tests/simulators/zoom.py) validates every exchange against the OpenAPI
spec, which costs more CPU per call than the app under test spends; a benchmark through it
would measure the simulator. This one answers only the calls `ZoomProvider.create` and
`.verify` make, with the same shapes, on aiohttp's C-accelerated server, and sleeps
`latency` before each answer -- the provider's own time, identical for ours and the floor.

`PUT /_bench/latency?ms=N` sets the latency between phases; `GET /_bench/stats` counts the
API calls served so the bench can show that ours and the floor make the same number.

Run: `python -m bench.provider_sim --port 8901` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
from typing import Any

from aiohttp import web

JOIN_HOST = "https://zoom.bench.invalid"
Json = dict[str, Any]


class Simulator:
    """In-memory meetings and registrants; every API answer waits `latency` seconds."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.calls = 0
        self.meetings: dict[int, Json] = {}
        self.registrants: dict[int, list[Json]] = {}
        self._ids = itertools.count(10**10)

    async def _wait(self) -> None:
        self.calls += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)

    async def token(self, request: web.Request) -> web.Response:
        await self._wait()
        return web.json_response(
            {"access_token": "bench-" + secrets.token_urlsafe(16), "expires_in": 3599}
        )

    async def create_meeting(self, request: web.Request) -> web.Response:
        await self._wait()
        body = await request.json()
        meeting_id = next(self._ids)
        settings = {"use_pmi": False, "approval_type": 2, **(body.get("settings") or {})}
        stored: Json = {
            "id": meeting_id,
            "uuid": secrets.token_urlsafe(16),
            "host_email": request.match_info["user"].lower(),
            "topic": body.get("topic", ""),
            "type": 2,
            "start_time": body.get("start_time"),
            "duration": body.get("duration", 60),
            "timezone": body.get("timezone", "UTC"),
            "agenda": body.get("agenda", ""),
            "password": body.get("password") or secrets.token_hex(5),
            "join_url": f"{JOIN_HOST}/j/{meeting_id}?pwd={secrets.token_urlsafe(16)}",
            "settings": settings,
        }
        self.meetings[meeting_id] = stored
        self.registrants[meeting_id] = []
        return web.json_response(stored, status=201)

    async def get_meeting(self, request: web.Request) -> web.Response:
        await self._wait()
        stored = self.meetings.get(int(request.match_info["meeting_id"]))
        if stored is None:
            return web.json_response({"code": 3001, "message": "not found"}, status=404)
        return web.json_response(stored)

    async def delete_meeting(self, request: web.Request) -> web.Response:
        await self._wait()
        meeting_id = int(request.match_info["meeting_id"])
        self.meetings.pop(meeting_id, None)
        self.registrants.pop(meeting_id, None)
        return web.Response(status=204)

    async def list_meetings(self, request: web.Request) -> web.Response:
        await self._wait()
        user = request.match_info["user"].lower()
        mine = [m for m in self.meetings.values() if m["host_email"] == user][:300]
        return web.json_response({"next_page_token": "", "meetings": mine})

    async def add_registrant(self, request: web.Request) -> web.Response:
        await self._wait()
        meeting_id = int(request.match_info["meeting_id"])
        if meeting_id not in self.meetings:
            return web.json_response({"code": 3001, "message": "not found"}, status=404)
        body = await request.json()
        registrant = {
            "id": secrets.token_urlsafe(12),
            "email": body["email"],
            "first_name": body.get("first_name", ""),
            "status": "approved",
            "join_url": f"{JOIN_HOST}/w/{meeting_id}?tk={secrets.token_urlsafe(24)}",
        }
        self.registrants[meeting_id].append(registrant)
        return web.json_response(
            {
                "id": meeting_id,
                "registrant_id": registrant["id"],
                "join_url": registrant["join_url"],
            },
            status=201,
        )

    async def list_registrants(self, request: web.Request) -> web.Response:
        await self._wait()
        found = self.registrants.get(int(request.match_info["meeting_id"]), [])
        return web.json_response({"next_page_token": "", "registrants": found})

    async def user_settings(self, request: web.Request) -> web.Response:
        await self._wait()
        return web.json_response(
            {
                "in_meeting": {
                    "screen_sharing": True,
                    "who_can_share_screen": "host",
                    "chat": True,
                    "allow_participants_chat_with": 2,
                }
            }
        )

    async def set_latency(self, request: web.Request) -> web.Response:
        self.latency = float(request.query["ms"]) / 1000
        self.meetings.clear()  # each phase starts empty: lookups cost the same every time
        self.registrants.clear()
        return web.json_response({"latency_ms": self.latency * 1000})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.calls})

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.post("/oauth/token", self.token),
                web.post("/users/{user}/meetings", self.create_meeting),
                web.get("/users/{user}/meetings", self.list_meetings),
                web.get("/users/{user}/settings", self.user_settings),
                web.get("/meetings/{meeting_id}", self.get_meeting),
                web.delete("/meetings/{meeting_id}", self.delete_meeting),
                web.post("/meetings/{meeting_id}/registrants", self.add_registrant),
                web.get("/meetings/{meeting_id}/registrants", self.list_registrants),
                web.put("/_bench/latency", self.set_latency),
                web.get("/_bench/stats", self.stats),
            ]
        )
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    simulator = Simulator(latency=args.latency_ms / 1000)
    web.run_app(simulator.app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
