"""A stateful Webex Meetings simulator: stores meetings and invitees, returns them, and can
misbehave on purpose.

Only the paths `WebexClient` uses exist. Every request and response passes through
openapi-core against `../shared/specs/webex/webex-meeting.json`; the token endpoint (not
part of that spec), bearer checks and faults are answered at the "gateway" in front of it.

Knobs for tests:
    drop_waiting_room   store `unlockedMeetingJoinSecurity: allowJoin` whatever was asked
    create_faults       a FaultQueue consumed by POST /meetings
    invitee_faults      a FaultQueue consumed by POST /meetingInvitees
    reject_creates      bodies for 400 answers to the next creates (error-mapping tests)
    participants        meeting id -> participants
    join(meeting_id, name=..., email=..., invitee=...)  put someone in the running
                        meeting; returns their participant id
    expelled            participant ids removed with PUT /meetingParticipants/{id}
    locked              meeting ids locked with PUT /meetings/controls
    add_meeting(host, ...)  a meeting made in Webex itself (weak settings, personal room)
    ended, deleted      meeting ids ended for everyone and deleted
    revoke_tokens()     make every access token answer 401
    refuse_tokens       answer 401 to every token, even fresh ones
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

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

SPEC = SPECS / "webex" / "webex-meeting.json"
SITE = "sim.webex.invalid"
CONTENT_TYPE = "application/json;charset=UTF-8"  # the only media type the spec declares

JsonObject = dict[str, Any]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "message": message,
            "errors": [{"description": message}],
            "trackingId": "SIM_" + secrets.token_hex(8),
        },
        status_code=status,
        media_type=CONTENT_TYPE,
    )


def _ok(payload: object) -> JSONResponse:
    return JSONResponse(payload, media_type=CONTENT_TYPE)


class WebexSimulator:
    """An in-memory Webex site reachable through `transport()`."""

    def __init__(
        self,
        *,
        access_token: str = "wsim-static-token",  # noqa: S107 (a test double's own value)
        client_id: str = "sim-client",
        client_secret: str = "sim-secret-value",  # noqa: S107 (a test double's own value)
        refresh_token: str = "sim-refresh-token",  # noqa: S107
        drop_waiting_room: bool = False,
        hang_seconds: float = 30.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.drop_waiting_room = drop_waiting_room
        self.hang_seconds = hang_seconds
        self.meetings: dict[str, JsonObject] = {}
        self.invitees: dict[str, list[JsonObject]] = {}
        self.participants: dict[str, list[JsonObject]] = {}
        self.ended: list[str] = []
        self.deleted: list[str] = []
        self.expelled: list[str] = []
        self.locked: set[str] = set()
        self.create_faults = FaultQueue()
        self.invitee_faults = FaultQueue()
        self.reject_creates: list[str] = []
        self.refuse_tokens = False
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self._tokens: set[str] = {access_token}
        self._validated = SpecValidationMiddleware(
            self._app(), SpecValidator(SPEC), violations=self.violations
        )

    def transport(self) -> TimeoutASGITransport:
        return TimeoutASGITransport(self)

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def join(
        self, meeting_id: str, *, name: str, email: str | None = None, invitee: bool = False
    ) -> str:
        """Someone joins the running meeting; Webex ids embed the meeting's id."""
        participant_id = f"{meeting_id}_{secrets.token_hex(16)}"
        person: JsonObject = {
            "id": participant_id,
            "host": False,
            "coHost": False,
            "displayName": name,
            "invitee": invitee,
            "muted": False,
            "video": "on",
            "state": "joined",
            "meetingId": meeting_id,
            "joinedTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if email:
            person["email"] = email
        self.participants.setdefault(meeting_id, []).append(person)
        return participant_id

    def add_meeting(
        self,
        host_email: str,
        *,
        title: str = "Team sync",
        start: str = "2030-01-01T10:00:00Z",
        end: str = "2030-01-01T10:30:00Z",
        password: str = "",
        lobby: bool = True,
        join_before_host: bool = False,
        personal_room: bool = False,
        integration_tags: list[str] | None = None,
    ) -> str:
        """A meeting the host scheduled in Webex itself (not through provisioner)."""
        meeting_id = secrets.token_hex(16)
        number = str(secrets.randbelow(9 * 10**9) + 10**9)
        self.meetings[meeting_id] = {
            "id": meeting_id,
            "meetingSeriesId": meeting_id,
            "meetingNumber": number,
            "title": title,
            "password": password,
            "meetingType": "meetingSeries",
            "state": "active",
            "timezone": "UTC",
            "start": start,
            "end": end,
            "hostUserId": "sim-" + host_email.split("@")[0],
            "hostDisplayName": host_email.split("@")[0],
            "hostEmail": host_email,
            "hostKey": "654321",
            "siteUrl": SITE,
            "webLink": f"https://{SITE}/sim/j.php?MTID=" + secrets.token_hex(16),
            "telephony": {"accessCode": number, "callInNumbers": []},
            "enabledBreakoutSessions": False,
            "enabledJoinBeforeHost": join_before_host,
            "unlockedMeetingJoinSecurity": "allowJoinWithLobby" if lobby else "allowJoin",
            "scheduledType": "personalRoomMeeting" if personal_room else "meeting",
            "integrationTags": list(integration_tags or []),
        }
        self.invitees[meeting_id] = []
        return meeting_id

    # -- gateway ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        request = Request(scope)
        if path == "/access_token":
            answer = await self._refresh(request, body)
        elif not self._authorised(request):
            answer = json_response(
                401,
                {
                    "message": "The request requires a valid access "
                    "token set in the Authorization request header.",
                    "trackingId": "SIM_401",
                },
                content_type=CONTENT_TYPE,
            )
        else:
            answer = await self._route(scope, body, method, path)
        await answer.send_to(send)

    async def _route(self, scope: Scope, body: bytes, method: str, path: str) -> CapturedResponse:
        faults = None
        if method == "POST" and path == "/meetings":
            faults = self.create_faults
            if self.reject_creates:
                message = self.reject_creates.pop(0)
                return json_response(
                    400,
                    {
                        "message": "The input parameters contain invalid items.",
                        "errors": [{"description": message}],
                        "trackingId": "SIM_400",
                    },
                    content_type=CONTENT_TYPE,
                )
        elif method == "POST" and path == "/meetingInvitees":
            faults = self.invitee_faults
        fault = faults.pop() if faults is not None else None
        if fault is not None:
            return await answer_with_fault(
                fault,
                lambda: self._validated.handle(scope, body),
                error_body={"message": "Internal Server Error", "trackingId": "SIM_5XX"},
                content_type=CONTENT_TYPE,
                hang_seconds=self.hang_seconds,
            )
        return await self._validated.handle(scope, body)

    async def _refresh(self, request: Request, body: bytes) -> CapturedResponse:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if (
            request.method != "POST"
            or form.get("grant_type") != "refresh_token"
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
            or form.get("refresh_token") != self.refresh_token
        ):
            return json_response(400, {"message": "invalid_grant"}, content_type=CONTENT_TYPE)
        token = "wsim-" + secrets.token_urlsafe(24)
        self._tokens.add(token)
        return json_response(
            200,
            {
                "access_token": token,
                "expires_in": 1209599,
                "refresh_token": self.refresh_token,
                "refresh_token_expires_in": 7775999,
                "token_type": "Bearer",
            },
            content_type=CONTENT_TYPE,
        )

    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return not self.refuse_tokens and scheme.lower() == "bearer" and token in self._tokens

    # -- the API ----------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/meetings", self.create_meeting, methods=["POST"]),
                Route("/meetings", self.list_meetings, methods=["GET"]),
                Route("/meetings/controls", self.get_controls, methods=["GET"]),
                Route("/meetings/controls", self.put_controls, methods=["PUT"]),
                Route("/meetings/{meeting_id}", self.get_meeting, methods=["GET"]),
                Route("/meetings/{meeting_id}", self.patch_meeting, methods=["PATCH"]),
                Route("/meetings/{meeting_id}", self.delete_meeting, methods=["DELETE"]),
                Route("/meetings/{meeting_id}/end", self.end_meeting, methods=["POST"]),
                Route("/meetingInvitees", self.list_invitees, methods=["GET"]),
                Route("/meetingInvitees", self.add_invitee, methods=["POST"]),
                Route("/meetingParticipants", self.list_participants, methods=["GET"]),
                Route(
                    "/meetingParticipants/{participant_id}",
                    self.update_participant,
                    methods=["PUT"],
                ),
            ]
        )

    def _apply(self, stored: JsonObject, body: JsonObject) -> None:
        for key in (
            "title",
            "agenda",
            "password",
            "start",
            "end",
            "timezone",
            "enabledJoinBeforeHost",
            "enableConnectAudioBeforeHost",
            "unlockedMeetingJoinSecurity",
            "enabledAutoRecordMeeting",
            "allowAnyUserToBeCoHost",
            "allowFirstUserToBeCoHost",
            "publicMeeting",
            "integrationTags",
        ):
            if key in body:
                stored[key] = body[key]
        for key in ("meetingOptions", "attendeePrivileges", "audioConnectionOptions"):
            if isinstance(body.get(key), dict):
                stored.setdefault(key, {}).update(body[key])
        if self.drop_waiting_room:
            stored["unlockedMeetingJoinSecurity"] = "allowJoin"

    async def create_meeting(self, request: Request) -> Response:
        body = await request.json()
        meeting_id = secrets.token_hex(16)
        host = str(body.get("hostEmail") or "token-user@example.com")
        number = str(secrets.randbelow(9 * 10**9) + 10**9)
        stored: JsonObject = {
            "id": meeting_id,
            "meetingSeriesId": meeting_id,
            "meetingNumber": number,
            "title": "",
            "password": body.get("password") or "Sim" + secrets.token_hex(4),
            "meetingType": "meetingSeries",
            "state": "active",
            "timezone": "UTC",
            "start": "",
            "end": "",
            "hostUserId": "sim-" + host.split("@")[0],
            "hostDisplayName": host.split("@")[0],
            "hostEmail": host,
            "hostKey": "123456",
            "siteUrl": SITE,
            "webLink": f"https://{SITE}/{SITE.split('.')[0]}/j.php?MTID=" + secrets.token_hex(16),
            "sipAddress": f"{number}@{SITE}",
            "enabledJoinBeforeHost": False,
            "unlockedMeetingJoinSecurity": "allowJoin",
            "telephony": {"accessCode": number, "callInNumbers": []},
            "enabledBreakoutSessions": False,
            "integrationTags": [],
        }
        self._apply(stored, body)
        self.meetings[meeting_id] = stored
        self.invitees[meeting_id] = [
            self._invitee(meeting_id, i) for i in body.get("invitees") or []
        ]
        return _ok(stored)

    @staticmethod
    def _invitee(meeting_id: str, body: JsonObject) -> JsonObject:
        return {
            "id": secrets.token_hex(12),
            "email": body["email"],
            "displayName": body.get("displayName") or body["email"],
            "coHost": bool(body.get("coHost", False)),
            "meetingId": meeting_id,
            "panelist": False,
        }

    async def list_meetings(self, request: Request) -> Response:
        tag = request.query_params.get("integrationTag")
        host = request.query_params.get("hostEmail")
        found = [
            m
            for m in self.meetings.values()
            if (tag is None or tag in m["integrationTags"])
            and (host is None or m["hostEmail"].lower() == host.lower())
        ]
        if request.query_params.get("meetingType") == "scheduledMeeting":
            found = [self._occurrence(m) for m in found if m["meetingType"] == "meetingSeries"]
            since, until = request.query_params.get("from"), request.query_params.get("to")
            found = [
                m
                for m in found
                if (not since or not m["end"] or m["end"] >= since)
                and (not until or not m["start"] or m["start"] < until)
            ]
        return _ok({"items": found[: int(float(request.query_params.get("max", "10")))]})

    @staticmethod
    def _occurrence(series: JsonObject) -> JsonObject:
        """The one scheduled meeting of a non-recurring series, as Webex lists it."""
        stamp = str(series.get("start", "")).replace("-", "").replace(":", "")
        return {
            **series,
            "id": f"{series['id']}_{stamp or 'next'}",
            "meetingSeriesId": series["id"],
            "meetingType": "scheduledMeeting",
            "state": "scheduled",
        }

    async def get_meeting(self, request: Request) -> Response:
        stored = self.meetings.get(request.path_params["meeting_id"])
        return _ok(stored) if stored else _error(404, "Meeting not found.")

    async def patch_meeting(self, request: Request) -> Response:
        stored = self.meetings.get(request.path_params["meeting_id"])
        if stored is None:
            return _error(404, "Meeting not found.")
        self._apply(stored, await request.json())
        return _ok(stored)

    async def delete_meeting(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if self.meetings.pop(meeting_id, None) is None:
            return _error(404, "Meeting not found.")
        self.invitees.pop(meeting_id, None)
        self.deleted.append(meeting_id)
        return Response(status_code=204)

    async def end_meeting(self, request: Request) -> Response:
        meeting_id = request.path_params["meeting_id"]
        if meeting_id not in self.meetings:
            return _error(404, "Meeting not found.")
        self.ended.append(meeting_id)
        return Response(status_code=204)

    async def list_invitees(self, request: Request) -> Response:
        meeting_id = request.query_params["meetingId"]
        if meeting_id not in self.meetings:
            return _error(404, "Meeting not found.")
        return _ok({"items": list(self.invitees[meeting_id])})

    async def add_invitee(self, request: Request) -> Response:
        body = await request.json()
        meeting_id = body["meetingId"]
        if meeting_id not in self.meetings:
            return _error(404, "Meeting not found.")
        invitee = self._invitee(meeting_id, body)
        self.invitees[meeting_id].append(invitee)
        return _ok(invitee)

    async def list_participants(self, request: Request) -> Response:
        meeting_id = request.query_params["meetingId"]
        if meeting_id not in self.meetings:
            return _error(404, "Meeting not found.")
        return JSONResponse({"items": self.participants.get(meeting_id, [])})

    def _series_of(self, meeting_id: str) -> str | None:
        series = meeting_id.split("_", 1)[0]
        return series if series in self.meetings else None

    async def get_controls(self, request: Request) -> Response:
        series = self._series_of(request.query_params["meetingId"])
        if series is None:
            return _error(404, "Meeting not found.")
        return _ok({"locked": series in self.locked})

    async def put_controls(self, request: Request) -> Response:
        series = self._series_of(request.query_params["meetingId"])
        if series is None:
            return _error(404, "Meeting not found.")
        body = await request.json()
        if body.get("locked") is True:
            self.locked.add(series)
        elif body.get("locked") is False:
            self.locked.discard(series)
        return _ok({"locked": series in self.locked})

    async def update_participant(self, request: Request) -> Response:
        participant_id = request.path_params["participant_id"]
        for meeting_id, people in self.participants.items():
            for person in people:
                if person["id"] == participant_id:
                    body = await request.json()
                    if body.get("expel") is True:
                        people.remove(person)
                        self.expelled.append(participant_id)
                    elif isinstance(body.get("muted"), bool):
                        person["muted"] = body["muted"]
                    answer = {k: v for k, v in person.items() if k != "joinedTime"}
                    return _ok({**answer, "meetingId": meeting_id})
        return _error(404, "Participant not found.")
