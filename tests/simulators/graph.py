"""A stateful Microsoft Graph simulator for the Teams provider, held to the Graph subset.

It serves the Entra ID token endpoint (`/{tenant}/oauth2/v2.0/token`) and, under `/v1.0`,
exactly the Graph paths `provisioner.providers.teams` uses. It stores onlineMeetings and
events in memory and answers with them, as Graph would -- including what Graph does that
Prism cannot: `createOrGet` returns the meeting an earlier call made for the same
`externalId`, an event POST with a known `transactionId` returns the first event, and a
PATCH outside Graph's updatable properties is refused.

Every request, and every answer that is not an injected fault, is validated with
openapi-core against ../shared/specs/msgraph/graph-v1.0-meetings-subset.json. The subset
uses `allOf` with `additionalProperties: {type: object}` in every part (as Microsoft's own
files do), which a plain JSON Schema validator reads as "every inherited scalar is an
unknown property"; Prism merges `allOf` first, and so do we (`_flattened_spec`), which
changes nothing about what a request or response may contain.

Knobs: `drop_lobby` (ignore lobbyBypassSettings on PATCH, as a tenant policy might),
`refuse_options` (answer 403 to a PATCH of meeting options),
`create_faults` (a `FaultQueue` for createOrGet and event POSTs), `revoke_tokens()`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from tests.simulators.validation import (
    CapturedResponse,
    FaultQueue,
    SpecValidator,
    SpecViolation,
    TimeoutASGITransport,
    answer_with_fault,
    json_response,
    read_body,
)
from tests.support.prism import SPECS

GRAPH_SPEC = SPECS / "msgraph" / "graph-v1.0-meetings-subset.json"
BASE_PATH = "/v1.0"
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "simulated-client-secret"  # noqa: S105 (a test fixture)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# What Graph lets a PATCH change (learn.microsoft.com "Update onlineMeeting"), plus
# joinMeetingIdSettings, which provisioner sends to require the passcode.
UPDATABLE = frozenset(
    {
        "subject",
        "startDateTime",
        "endDateTime",
        "participants",
        "isEntryExitAnnounced",
        "lobbyBypassSettings",
        "allowedPresenters",
        "allowAttendeeToEnableCamera",
        "allowAttendeeToEnableMic",
        "allowMeetingChat",
        "allowTeamworkReactions",
        "recordAutomatically",
        "joinMeetingIdSettings",
    }
)
# The parameters the createOrGet action declares; OData refuses any other.
CREATE_OR_GET_PARAMETERS = frozenset(
    {"chatInfo", "endDateTime", "externalId", "participants", "startDateTime", "subject"}
)

JsonObject = dict[str, Any]
Reply = tuple[int, JsonObject | None]


def _resolve(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _merged(schemas: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """One object schema from an `allOf` chain: properties united, the last word on
    `additionalProperties` (they are all `{type: object}` here)."""
    schema = _resolve(schemas, schema)
    if "allOf" not in schema:
        return schema
    merged: dict[str, Any] = {"type": "object", "properties": {}}
    for part in schema["allOf"]:
        flat = _merged(schemas, part)
        merged["properties"].update(flat.get("properties", {}))
        for key in ("additionalProperties", "title"):
            if key in flat:
                merged[key] = flat[key]
        if "required" in flat:
            merged.setdefault("required", []).extend(flat["required"])
    return merged


@functools.lru_cache(maxsize=1)
def _flattened_spec() -> Path:
    """The subset with `allOf` merged, written once per process to a temporary file."""
    document = json.loads(GRAPH_SPEC.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    flattened = {name: _merged(schemas, schema) for name, schema in schemas.items()}
    document["components"]["schemas"] = flattened
    digest = hashlib.sha256(GRAPH_SPEC.read_bytes()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"provisioner-graph-subset-flat-{digest}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def graph_validator() -> SpecValidator:
    return SpecValidator(_flattened_spec(), base_path=BASE_PATH)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def odata_error(status: int, code: str, message: str, target: str | None = None) -> Reply:
    error: JsonObject = {"code": code, "message": message}
    if target:
        error["target"] = target
    return status, {"error": error}


NO_MEETING = odata_error(404, "NotFound", "The meeting was not found.")
NO_EVENT = odata_error(404, "ErrorItemNotFound", "The specified object was not found.")
_MEETINGS = r"/users/([^/]+)/onlineMeetings"
_EVENTS = r"/users/([^/]+)/events"
# (method, path under /v1.0, handler)
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", _MEETINGS + "/createOrGet", "_create_or_get"),
    ("GET", _MEETINGS, "_list_meetings"),
    ("GET", _MEETINGS + "/([^/]+)/attendanceReports", "_attendance"),
    ("GET", _MEETINGS + "/([^/]+)", "_get_meeting"),
    ("PATCH", _MEETINGS + "/([^/]+)", "_patch_meeting"),
    ("DELETE", _MEETINGS + "/([^/]+)", "_delete_meeting"),
    ("POST", _EVENTS, "_create_event"),
    ("GET", _EVENTS + "/([^/]+)", "_get_event"),
    ("PATCH", _EVENTS + "/([^/]+)", "_patch_event"),
    ("DELETE", _EVENTS + "/([^/]+)", "_delete_event"),
)
CREATES = frozenset({"_create_or_get", "_create_event"})


@dataclass(frozen=True)
class Call:
    """One authorised Graph call: the path's user and ids, the body and the query."""

    user: str
    ids: tuple[str, ...]
    payload: JsonObject
    query: dict[str, str]

    @property
    def id(self) -> str:
        return self.ids[0]


@dataclass
class GraphSimulator:
    """Graph for one tenant; `transport()` gives the httpx transport clients use."""

    default_lobby_scope: str = "organization"
    drop_lobby: bool = False
    refuse_options: bool = False
    token_lifetime: int = 3599
    hang_seconds: float = 30.0
    meetings: dict[str, JsonObject] = field(default_factory=dict)
    events: dict[str, JsonObject] = field(default_factory=dict)
    reports: dict[str, list[JsonObject]] = field(default_factory=dict)
    create_faults: FaultQueue = field(default_factory=FaultQueue)
    violations: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    token_requests: int = 0
    _tokens: dict[str, float] = field(default_factory=dict)
    _by_external: dict[tuple[str, str], str] = field(default_factory=dict)
    _by_transaction: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validator = graph_validator()
        self._routes = [
            (verb, re.compile(path), name, getattr(self, name)) for verb, path, name in ROUTES
        ]

    def transport(self) -> TimeoutASGITransport:
        return TimeoutASGITransport(self)

    def revoke_tokens(self) -> None:
        """Invalidate every issued token, so the next call gets 401 (as on key rollover)."""
        self._tokens.clear()

    def meeting_for(self, external_id: str) -> JsonObject | None:
        ids = [m for (_, ext), m in self._by_external.items() if ext == external_id]
        return self.meetings.get(ids[0]) if ids else None

    def add_attendance(self, meeting_id: str, records: list[JsonObject]) -> None:
        report = {
            "id": secrets.token_hex(8),
            "meetingStartDateTime": _now(),
            "meetingEndDateTime": _now(),
            "totalParticipantCount": len(records),
            "attendanceRecords": records,
        }
        self.reports.setdefault(meeting_id, []).append(report)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        await (await self._handle(Request(scope), body)).send_to(send)

    async def _handle(self, request: Request, body: bytes) -> CapturedResponse:
        path = request.url.path
        self.calls.append((request.method, path))
        if request.method == "POST" and path == f"/{TENANT}/oauth2/v2.0/token":
            return self._token(body)
        try:
            self._validator.validate_request(request, body)
        except SpecViolation as violation:
            return self._refuse(violation)
        route = self._route(request.method, path.removeprefix(BASE_PATH))
        if not self._authorized(request):
            reply = odata_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        elif route is None:
            reply = odata_error(400, "BadRequest", "Resource not found for the segment.")
        else:
            name, handler, (user, *ids) = route
            query = {k: v[0] for k, v in parse_qs(request.url.query).items()}
            call = Call(user, tuple(ids), json.loads(body) if body else {}, query)
            fault = self.create_faults.pop() if name in CREATES else None
            if fault is not None:
                _, error = odata_error(500, "InternalServerError", "Simulated failure.")
                return await answer_with_fault(
                    fault, lambda: handler(call), error_body=error, hang_seconds=self.hang_seconds
                )
            reply = handler(call)
        return self._answer(request, body, reply)

    def _route(
        self, method: str, path: str
    ) -> tuple[str, Callable[[Call], Reply], tuple[str, ...]] | None:
        for verb, pattern, name, handler in self._routes:
            match = pattern.fullmatch(path)
            if verb == method and match:
                return name, handler, match.groups()
        return None

    def _answer(self, request: Request, body: bytes, reply: Reply) -> CapturedResponse:
        status, payload = reply
        if payload is None:
            captured = CapturedResponse(status=status, headers=[], body=b"")
        else:
            captured = json_response(status, payload)
        try:
            self._validator.validate_response(
                request, body, status_code=status, headers=captured.header_map(), data=captured.body
            )
        except SpecViolation as violation:
            return self._refuse(violation)
        return captured

    def _refuse(self, violation: SpecViolation) -> CapturedResponse:
        self.violations.append(str(violation))
        return json_response(
            500,
            {
                "simulator": "spec violation",
                "where": violation.where,
                "violations": violation.violations,
            },
        )

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        return self._tokens.get(token, 0.0) > time.time()

    def _token(self, body: bytes) -> CapturedResponse:
        """Entra ID's client-credentials grant, refusing anything else as Entra would."""
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return json_response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        if form.get("scope") != GRAPH_SCOPE:
            return json_response(400, {"error": "invalid_scope"})
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.time() + self.token_lifetime
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )

    def _new_meeting(
        self,
        user: str,
        subject: str | None,
        start: str | None,
        end: str | None,
        external_id: str | None,
    ) -> JsonObject:
        meeting_id = "MSo" + secrets.token_urlsafe(24)
        thread = secrets.token_hex(16)
        meeting: JsonObject = {
            "id": meeting_id,
            "creationDateTime": _now(),
            "subject": subject,
            "startDateTime": start or _now(),
            "endDateTime": end or _now(),
            "externalId": external_id,
            "joinWebUrl": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{thread}"
            "%40thread.v2/0",
            "joinMeetingIdSettings": {
                "isPasscodeRequired": False,
                "joinMeetingId": str(secrets.randbelow(10**12)),
                "passcode": secrets.token_urlsafe(6),
            },
            "lobbyBypassSettings": {
                "scope": self.default_lobby_scope,
                "isDialInBypassEnabled": False,  # Teams' default
            },
            "allowedPresenters": "everyone",
            "allowMeetingChat": "enabled",
            "allowAttendeeToEnableMic": True,
            "participants": {"organizer": {"upn": user, "role": "presenter"}},
        }
        self.meetings[meeting_id] = meeting
        return meeting

    def _create_or_get(self, call: Call) -> Reply:
        unknown = sorted(set(call.payload) - CREATE_OR_GET_PARAMETERS)
        if unknown:
            message = f"The parameter '{unknown[0]}' is not valid for 'createOrGet'."
            return odata_error(400, "BadRequest", message, target=unknown[0])
        key = (call.user, str(call.payload["externalId"]))
        existing = self._by_external.get(key)
        if existing in self.meetings:
            return 200, self.meetings[existing]
        get = call.payload.get
        meeting = self._new_meeting(
            call.user, get("subject"), get("startDateTime"), get("endDateTime"), key[1]
        )
        self._by_external[key] = meeting["id"]
        return 201, meeting

    def _list_meetings(self, call: Call) -> Reply:
        match = re.fullmatch(r"JoinWebUrl eq '(.*)'", call.query.get("$filter", ""))
        if match is None:
            return odata_error(400, "BadRequest", "Filter is required.", target="$filter")
        url = match.group(1).replace("''", "'")
        return 200, {"value": [m for m in self.meetings.values() if m["joinWebUrl"] == url]}

    def _get_meeting(self, call: Call) -> Reply:
        return (200, self.meetings[call.id]) if call.id in self.meetings else NO_MEETING

    def _patch_meeting(self, call: Call) -> Reply:
        meeting = self.meetings.get(call.id)
        if meeting is None:
            return NO_MEETING
        if self.refuse_options and "lobbyBypassSettings" in call.payload:
            return odata_error(403, "Forbidden", "Meeting options are locked by policy.")
        refused = sorted(set(call.payload) - UPDATABLE)
        if refused:
            message = f"Property '{refused[0]}' cannot be updated."
            return odata_error(400, "BadRequest", message, target=refused[0])
        if ("startDateTime" in call.payload) != ("endDateTime" in call.payload):
            message = "startDateTime and endDateTime go together."
            return odata_error(400, "BadRequest", message, target="endDateTime")
        for key, value in call.payload.items():
            if key == "lobbyBypassSettings":
                if not self.drop_lobby:
                    meeting[key] = {**meeting[key], **value}
            elif key == "joinMeetingIdSettings":
                required = bool(value.get("isPasscodeRequired"))
                meeting[key] = {**meeting[key], "isPasscodeRequired": required}
            else:
                meeting[key] = value
        return 200, meeting

    def _delete_meeting(self, call: Call) -> Reply:
        if self.meetings.pop(call.id, None) is None:
            return NO_MEETING
        self._by_external = {k: v for k, v in self._by_external.items() if v != call.id}
        return 204, None

    def _attendance(self, call: Call) -> Reply:
        if call.id not in self.meetings:
            return NO_MEETING
        return 200, {"value": self.reports.get(call.id, [])}

    def _create_event(self, call: Call) -> Reply:
        transaction = call.payload.get("transactionId")
        if transaction and (call.user, transaction) in self._by_transaction:
            return 201, self.events[self._by_transaction[call.user, transaction]]
        event_id = "AAMk" + secrets.token_urlsafe(24)
        event: JsonObject = {**call.payload, "id": event_id, "isOrganizer": True}
        online = call.payload.get("isOnlineMeeting")
        if online and call.payload.get("onlineMeetingProvider") == "teamsForBusiness":
            meeting = self._new_meeting(call.user, call.payload.get("subject"), None, None, None)
            event["onlineMeeting"] = {"joinUrl": meeting["joinWebUrl"]}
        self.events[event_id] = event
        if transaction:
            self._by_transaction[call.user, transaction] = event_id
        return 201, event

    def _get_event(self, call: Call) -> Reply:
        return (200, self.events[call.id]) if call.id in self.events else NO_EVENT

    def _patch_event(self, call: Call) -> Reply:
        event = self.events.get(call.id)
        if event is None:
            return NO_EVENT
        event.update(call.payload)
        return 200, event

    def _delete_event(self, call: Call) -> Reply:
        event = self.events.pop(call.id, None)
        if event is None:
            return NO_EVENT
        join = (event.get("onlineMeeting") or {}).get("joinUrl")
        self.meetings = {k: m for k, m in self.meetings.items() if m["joinWebUrl"] != join}
        return 204, None
