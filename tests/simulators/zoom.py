"""A stateful Zoom API simulator: stores meetings and registrants, returns them, and can
misbehave on purpose.

Only the paths `ZoomClient` uses exist. Every request and response passes through
openapi-core against `../shared/specs/zoom/meetings.prism.json`; the OAuth token endpoint
(not part of that spec) and the faults are answered at the "gateway" in front of it, as
Zoom's own edge would.

Knobs for tests:
    drop_waiting_room   store `waiting_room: false` whatever was asked (verify must notice)
    create_faults       a FaultQueue consumed by POST /users/{userId}/meetings
    registrant_faults   a FaultQueue consumed by POST /meetings/{id}/registrants
    reject_creates      bodies for 400 answers to the next creates (error-mapping tests)
    reject_registrants  bodies for 400 answers to the next registrant adds
    settings_scope_missing  GET /users/{userId}/settings answers Zoom's "token lacks scope"
    user_settings       what GET /users/{userId}/settings reports under `in_meeting`
    participants        meeting id -> live participants
    join(meeting_id, name=..., email=...)   put someone in a live meeting (invited or
                        not); returns their participant id
    add_meeting(host, ...)  a meeting made outside provisioner (weak settings, a PMI...)
    users               extra active users for GET /users (hosts of meetings are listed
                        anyway)
    ended, deleted      meeting ids ended for everyone (PUT .../status) and deleted
    revoke_tokens()     make every issued access token answer 401
    refuse_tokens       answer 401 to every token, even fresh ones
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.simulators.validation import (
    CapturedResponse,
    FaultQueue,
    SpecValidationMiddleware,
    SpecValidator,
    TimeoutASGITransport,
    answer_with_fault,
    json_response,
    read_body,
)
from tests.support.prism import SPECS

SPEC = SPECS / "zoom" / "meetings.prism.json"
JOIN_HOST = "https://zoom.sim.invalid"

JsonObject = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ZoomSimulator:
    """An in-memory Zoom account reachable through `transport()`."""

    def __init__(
        self,
        *,
        account_id: str = "sim-account",
        client_id: str = "sim-client",
        client_secret: str = "sim-secret-value",  # noqa: S107 (a test double's own value)
        drop_waiting_room: bool = False,
        token_lifetime: int = 3599,
        hang_seconds: float = 30.0,
    ) -> None:
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.drop_waiting_room = drop_waiting_room
        self.token_lifetime = token_lifetime
        self.hang_seconds = hang_seconds
        self.meetings: dict[int, JsonObject] = {}
        self.registrants: dict[int, list[JsonObject]] = {}
        self.participants: dict[int, list[JsonObject]] = {}
        self.ended: list[int] = []
        self.deleted: list[int] = []
        self.users: list[str] = []
        self.create_faults = FaultQueue()
        self.registrant_faults = FaultQueue()
        self.reject_creates: list[JsonObject] = []
        self.reject_registrants: list[JsonObject] = []
        self.settings_scope_missing = False
        self.user_settings: JsonObject = {
            "screen_sharing": True,
            "who_can_share_screen": "host",
            "chat": True,
            "allow_participants_chat_with": 2,
        }
        self.refuse_tokens = False
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self._tokens: set[str] = set()
        self._validated = SpecValidationMiddleware(
            self._app(), SpecValidator(SPEC, one_of_as_any_of=True), violations=self.violations
        )

    def transport(self) -> TimeoutASGITransport:
        return TimeoutASGITransport(self)

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def join(self, meeting_id: int | str, *, name: str, email: str | None = None) -> str:
        """Someone joins the running meeting (as the Dashboard would then list them)."""
        participant_id = secrets.token_urlsafe(12)
        person: JsonObject = {
            "id": participant_id,
            "user_id": str(secrets.randbelow(10**8)),
            "user_name": name,
            "join_time": _now(),
            "status": "in_meeting",
        }
        if email:
            person["email"] = email
        self.participants.setdefault(int(meeting_id), []).append(person)
        return participant_id

    def add_meeting(
        self,
        host_email: str,
        *,
        topic: str = "Team sync",
        start_time: str | None = None,
        password: str = "",
        waiting_room: bool = True,
        join_before_host: bool = False,
        meeting_authentication: bool = True,
        pmi: bool = False,
        agenda: str = "",
    ) -> int:
        """A meeting the host made in Zoom itself (not through provisioner)."""
        meeting_id = secrets.randbelow(9 * 10**10) + 10**10
        stored: JsonObject = {
            "id": meeting_id,
            "uuid": base64.b64encode(secrets.token_bytes(16)).decode(),
            "host_id": "sim-host-" + host_email.split("@")[0],
            "host_email": host_email.lower(),
            "topic": topic,
            "type": 2,
            "status": "waiting",
            "start_time": start_time or _now(),
            "duration": 30,
            "timezone": "UTC",
            "agenda": agenda,
            "created_at": _now(),
            "password": password,
            "join_url": f"{JOIN_HOST}/j/{meeting_id}",
            "start_url": f"{JOIN_HOST}/s/{meeting_id}?zak={secrets.token_urlsafe(16)}",
            "settings": {
                "use_pmi": pmi,
                "waiting_room": waiting_room,
                "join_before_host": join_before_host,
                "mute_upon_entry": False,
                "meeting_authentication": meeting_authentication,
                "approval_type": 2,
            },
        }
        if pmi:
            stored["pmi"] = str(secrets.randbelow(9 * 10**9) + 10**9)
        self.meetings[meeting_id] = stored
        self.registrants[meeting_id] = []
        return meeting_id

    # -- gateway ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        if path == "/oauth/token":
            answer = self._token(Request(scope))
        elif not self._authorised(Request(scope)):
            answer = json_response(401, {"code": 124, "message": "Invalid access token."})
        else:
            answer = await self._route(scope, body, method, path)
        await answer.send_to(send)

    async def _route(self, scope: Scope, body: bytes, method: str, path: str) -> CapturedResponse:
        parts = path.strip("/").split("/")
        faults = None
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "meetings":
            faults = self.create_faults
            if self.reject_creates:
                return json_response(400, self.reject_creates.pop(0))
        elif method == "POST" and len(parts) == 3 and parts[2] == "registrants":
            faults = self.registrant_faults
        fault = faults.pop() if faults is not None else None
        if fault is not None:
            return await answer_with_fault(
                fault,
                lambda: self._validated.handle(scope, body),
                error_body={"code": 500, "message": "Internal error."},
                hang_seconds=self.hang_seconds,
            )
        return await self._validated.handle(scope, body)

    def _token(self, request: Request) -> CapturedResponse:
        self.token_requests += 1
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if (
            request.method != "POST"
            or request.headers.get("authorization") != f"Basic {expected}"
            or request.query_params.get("grant_type") != "account_credentials"
            or request.query_params.get("account_id") != self.account_id
        ):
            return json_response(
                400, {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}
            )
        token = "zsim-" + secrets.token_urlsafe(24)
        self._tokens.add(token)
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": "meeting:write:admin meeting:read:admin",
            },
        )

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return not self.refuse_tokens and scheme.lower() == "bearer" and token in self._tokens

    # -- the API ----------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/users", self.list_users, methods=["GET"]),
                Route("/users/{user}/meetings", self.create_meeting, methods=["POST"]),
                Route("/users/{user}/meetings", self.list_meetings, methods=["GET"]),
                Route("/users/{user}/settings", self.get_user_settings, methods=["GET"]),
                Route("/meetings/{meeting_id:int}", self.get_meeting, methods=["GET"]),
                Route("/meetings/{meeting_id:int}", self.patch_meeting, methods=["PATCH"]),
                Route("/meetings/{meeting_id:int}", self.delete_meeting, methods=["DELETE"]),
                Route("/meetings/{meeting_id:int}/status", self.meeting_status, methods=["PUT"]),
                Route(
                    "/meetings/{meeting_id:int}/registrants", self.add_registrant, methods=["POST"]
                ),
                Route(
                    "/meetings/{meeting_id:int}/registrants", self.list_registrants, methods=["GET"]
                ),
                Route(
                    "/metrics/meetings/{meeting_id:int}/participants",
                    self.list_participants,
                    methods=["GET"],
                ),
            ]
        )

    @staticmethod
    def _missing(meeting_id: int) -> JSONResponse:
        return JSONResponse(
            {"code": 3001, "message": f"Meeting {meeting_id} is not found or has expired."},
            status_code=404,
        )

    def _apply_settings(self, stored: JsonObject, settings: JsonObject) -> None:
        stored["settings"].update(settings)
        if self.drop_waiting_room:
            stored["settings"]["waiting_room"] = False

    async def create_meeting(self, request: Request) -> Response:
        body = await request.json()
        meeting_id = secrets.randbelow(9 * 10**10) + 10**10
        token = secrets.token_urlsafe(16)
        stored: JsonObject = {
            "id": meeting_id,
            "uuid": base64.b64encode(secrets.token_bytes(16)).decode(),
            "host_id": "sim-host-" + request.path_params["user"].split("@")[0],
            "host_email": request.path_params["user"].lower(),
            "topic": body.get("topic", "Zoom meeting"),
            "type": body.get("type", 2),
            "status": "waiting",
            "start_time": body.get("start_time", _now()),
            "duration": body.get("duration", 60),
            "timezone": body.get("timezone", "UTC"),
            "agenda": body.get("agenda", ""),
            "created_at": _now(),
            "password": body.get("password") or secrets.token_hex(5),
            "join_url": f"{JOIN_HOST}/j/{meeting_id}?pwd={token}",
            "start_url": f"{JOIN_HOST}/s/{meeting_id}?zak={secrets.token_urlsafe(16)}",
            "settings": {
                "use_pmi": False,
                "waiting_room": False,
                "join_before_host": False,
                "mute_upon_entry": False,
                "meeting_authentication": False,
                "approval_type": 2,
            },
        }
        self._apply_settings(stored, dict(body.get("settings") or {}))
        if stored["settings"]["approval_type"] in (0, 1):
            stored["registration_url"] = f"{JOIN_HOST}/meeting/register/{token}"
        self.meetings[meeting_id] = stored
        self.registrants[meeting_id] = []
        return JSONResponse({k: v for k, v in stored.items() if k != "status"}, status_code=201)

    async def list_meetings(self, request: Request) -> Response:
        user = request.path_params["user"].lower()
        mine = [m for m in self.meetings.values() if m["host_email"] == user]
        if request.query_params.get("type") in ("upcoming", "upcoming_meetings"):
            mine = [m for m in mine if m["id"] not in self.ended]
        size = int(request.query_params.get("page_size", "30"))
        start = int(request.query_params.get("next_page_token") or 0)
        page = mine[start : start + size]
        following = start + size if start + size < len(mine) else None
        keys = (
            "id",
            "uuid",
            "host_id",
            "topic",
            "type",
            "start_time",
            "duration",
            "timezone",
            "agenda",
            "created_at",
            "join_url",
        )
        return JSONResponse(
            {
                "page_size": size,
                "total_records": len(mine),
                "next_page_token": str(following) if following else "",
                "meetings": [{k: m[k] for k in (*keys, "pmi") if k in m} for m in page],
            }
        )

    async def list_users(self, request: Request) -> Response:
        emails = list(
            dict.fromkeys([*self.users, *(m["host_email"] for m in self.meetings.values())])
        )
        return JSONResponse(
            {
                "page_size": int(request.query_params.get("page_size", "30")),
                "total_records": len(emails),
                "next_page_token": "",
                "users": [
                    {"id": "sim-user-" + e.split("@")[0], "email": e, "type": 2, "status": "active"}
                    for e in emails
                ],
            }
        )

    async def get_meeting(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if meeting_id not in self.meetings:
            return self._missing(meeting_id)
        return JSONResponse(self.meetings[meeting_id])

    async def patch_meeting(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if meeting_id not in self.meetings:
            return self._missing(meeting_id)
        body = await request.json()
        stored = self.meetings[meeting_id]
        for key in ("topic", "start_time", "duration", "timezone", "agenda", "password"):
            if key in body:
                stored[key] = body[key]
        self._apply_settings(stored, dict(body.get("settings") or {}))
        return Response(status_code=204)

    async def delete_meeting(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if self.meetings.pop(meeting_id, None) is None:
            return self._missing(meeting_id)
        self.registrants.pop(meeting_id, None)
        self.deleted.append(meeting_id)
        return Response(status_code=204)

    async def meeting_status(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if meeting_id not in self.meetings:
            return self._missing(meeting_id)
        if (await request.json()).get("action") == "end":
            self.ended.append(meeting_id)
        return Response(status_code=204)

    async def add_registrant(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        stored = self.meetings.get(meeting_id)
        if stored is None:
            return self._missing(meeting_id)
        if stored["settings"].get("approval_type") not in (0, 1):
            return JSONResponse(
                {"code": 3043, "message": "Meeting has not enabled registration."}, status_code=400
            )
        if self.reject_registrants:
            return JSONResponse(self.reject_registrants.pop(0), status_code=400)
        body = await request.json()
        registrant = {
            "id": secrets.token_urlsafe(12),
            "email": body["email"],
            "first_name": body["first_name"],
            "last_name": body.get("last_name", ""),
            "status": "approved",
            "create_time": _now(),
            "join_url": f"{JOIN_HOST}/w/{meeting_id}?tk={secrets.token_urlsafe(24)}",
        }
        self.registrants[meeting_id].append(registrant)
        return JSONResponse(
            {
                "id": meeting_id,
                "registrant_id": registrant["id"],
                "join_url": registrant["join_url"],
                "topic": stored["topic"],
                "start_time": stored["start_time"],
            },
            status_code=201,
        )

    async def list_registrants(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if meeting_id not in self.meetings:
            return self._missing(meeting_id)
        status = request.query_params.get("status", "approved")
        found = [r for r in self.registrants[meeting_id] if r["status"] == status]
        return JSONResponse(
            {
                "page_size": int(request.query_params.get("page_size", "30")),
                "total_records": len(found),
                "next_page_token": "",
                "registrants": found,
            }
        )

    async def get_user_settings(self, request: Request) -> Response:
        if self.settings_scope_missing:
            return JSONResponse(
                {
                    "code": 4711,
                    "message": "Invalid access token, does not contain scopes:[user:read:admin]",
                },
                status_code=400,
            )
        return JSONResponse({"in_meeting": dict(self.user_settings)})

    async def list_participants(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if meeting_id not in self.meetings:
            return self._missing(meeting_id)
        found = self.participants.get(meeting_id, [])
        return JSONResponse(
            {
                "page_size": 300,
                "total_records": len(found),
                "next_page_token": "",
                "participants": found,
            }
        )
