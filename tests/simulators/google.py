"""A stateful Google Calendar + Meet simulator for the Google Meet provider.

Served from one ASGI app, as three hosts would be:

    POST /token                       OAuth JWT bearer grant (domain-wide delegation): the
                                      assertion's RS256 signature, iss, sub, aud, scope
                                      and lifetime are checked; the token acts for `sub`
    /calendar/v3/calendars/...        Calendar events (validated: calendar.v3.openapi.json)
    /v2/spaces/..., /v2/conferenceRecords/...   Meet (validated: meet.v2.openapi.json)

It behaves as Google does where Prism cannot: a client-chosen event id that exists gets
409, a `createRequest` makes one Meet space per requestId (pending for `pending_polls`
reads if asked), a meeting code is an alias for reading a space but not for changing it,
deleted events stay readable as "cancelled" and a second delete gets 410, and each call
needs one of the scopes the spec lists for its operation.

Every request, and every 2xx answer, is validated with openapi-core. The discovery-derived
specs declare only 200 responses, so error answers use Google's documented error envelope
(`error_body`) and are not spec-validated; injected faults are answered at the gateway.

Knobs: `drop_access_type` (ignore config.accessType on PATCH), `phone_access` (spaces
get dial-in numbers), `refuse_config` (403 to every space PATCH), `pending_polls`,
`create_faults` (a `FaultQueue` for events.insert), `revoke_tokens()`,
`start_conference(...)` to put people in a space.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
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

CALENDAR_SPEC = SPECS / "google" / "calendar.v3.openapi.json"
MEET_SPEC = SPECS / "google" / "meet.v2.openapi.json"
CALENDAR_BASE = "/calendar/v3"
TOKEN_PATH = "/token"
CLIENT_EMAIL = "provisioner@example-project.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")

JsonObject = dict[str, Any]
Reply = tuple[int, JsonObject | None]


@functools.lru_cache(maxsize=1)
def service_account_key(token_uri: str) -> tuple[str, rsa.RSAPrivateKey]:
    """A JSON key file as Google issues it (fresh 2048-bit key, once per process)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": KEY_ID,
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": token_uri,
        }
    ), key


@functools.lru_cache(maxsize=2)
def _security(spec_path: str) -> dict[str, list[frozenset[str]]]:
    """operationId -> the scope sets the spec accepts (any one set suffices)."""
    document = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    found: dict[str, list[frozenset[str]]] = {}
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                found[operation["operationId"]] = [
                    frozenset(alt.get("Oauth2", [])) for alt in operation.get("security", [])
                ]
    return found


def error_body(code: int, message: str, reason: str, status: str) -> JsonObject:
    return {
        "error": {
            "code": code,
            "message": message,
            "status": status,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }


def _err(code: int, message: str, reason: str, status: str) -> Reply:
    return code, error_body(code, message, reason, status)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _code() -> str:
    letters = string.ascii_lowercase
    return "-".join("".join(secrets.choice(letters) for _ in range(n)) for n in (3, 4, 3))


NOT_FOUND = _err(404, "Requested entity was not found.", "notFound", "NOT_FOUND")
UNAUTHENTICATED = _err(
    401, "Request had invalid authentication credentials.", "authError", "UNAUTHENTICATED"
)
NO_SCOPE = _err(
    403,
    "Request had insufficient authentication scopes.",
    "insufficientPermissions",
    "PERMISSION_DENIED",
)
NOT_OWNER = _err(403, "The caller does not have permission", "forbidden", "PERMISSION_DENIED")

_CAL = rf"{CALENDAR_BASE}/calendars/([^/]+)/events"
# (method, path, operationId -- which names the scopes the spec accepts, handler)
ROUTES: tuple[tuple[str, str, str, str], ...] = (
    ("POST", _CAL, "calendar.events.insert", "_insert"),
    ("GET", _CAL + "/([^/]+)", "calendar.events.get", "_get_event"),
    ("PATCH", _CAL + "/([^/]+)", "calendar.events.patch", "_patch_event"),
    ("DELETE", _CAL + "/([^/]+)", "calendar.events.delete", "_delete_event"),
    ("POST", r"/v2/spaces/([^/:]+):endActiveConference", "meet.spaces.endActiveConference", "_end"),
    ("GET", r"/v2/spaces/([^/:]+)", "meet.spaces.get", "_get_space"),
    ("PATCH", r"/v2/spaces/([^/:]+)", "meet.spaces.patch", "_patch_space"),
    ("GET", r"/v2/conferenceRecords", "meet.conferenceRecords.list", "_list_records"),
    (
        "GET",
        r"/v2/conferenceRecords/([^/]+)/participants",
        "meet.conferenceRecords.participants.list",
        "_list_participants",
    ),
)


@dataclass(frozen=True)
class Call:
    """One authorised API call: who makes it, the path's ids, body and query."""

    user: str
    ids: tuple[str, ...]
    payload: JsonObject
    query: dict[str, str]


@dataclass
class GoogleSimulator:
    """One Workspace domain; `transport()` gives the httpx transport clients use."""

    token_uri: str
    users: frozenset[str] = frozenset({"host@example.com", "other@example.com"})
    default_access_type: str = "TRUSTED"
    drop_access_type: bool = False
    phone_access: bool = False
    refuse_config: bool = False
    pending_polls: int = 0
    hang_seconds: float = 30.0
    events: dict[tuple[str, str], JsonObject] = field(default_factory=dict)
    spaces: dict[str, JsonObject] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    records: dict[str, JsonObject] = field(default_factory=dict)
    participants: dict[str, list[JsonObject]] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    create_faults: FaultQueue = field(default_factory=FaultQueue)
    violations: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    token_subjects: list[str] = field(default_factory=list)
    _tokens: dict[str, tuple[str, frozenset[str], float]] = field(default_factory=dict)
    _by_request: dict[str, str] = field(default_factory=dict)
    _polls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _, key = service_account_key(self.token_uri)
        self._public_key = key.public_key()
        self._calendar = SpecValidator(CALENDAR_SPEC, base_path=CALENDAR_BASE)
        self._meet = SpecValidator(MEET_SPEC)
        self._routes = [
            (verb, re.compile(path), operation, getattr(self, name))
            for verb, path, operation, name in ROUTES
        ]

    def transport(self) -> TimeoutASGITransport:
        return TimeoutASGITransport(self)

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def space_of(self, owner: str, event_id: str) -> JsonObject | None:
        event = self.events.get((owner, event_id))
        code = (event or {}).get("conferenceData", {}).get("conferenceId")
        return next((s for s in self.spaces.values() if s["meetingCode"] == code), None)

    def start_conference(self, space_name: str, people: list[JsonObject]) -> str:
        """Begin a conference in the space with `people` (Participant JSON) in it."""
        record_id = secrets.token_hex(8)
        name = f"conferenceRecords/{record_id}"
        self.records[record_id] = {"name": name, "space": space_name, "startTime": _now()}
        self.participants[record_id] = [
            {"name": f"{name}/participants/{i}", **p} for i, p in enumerate(people)
        ]
        self.spaces[space_name.split("/", 1)[1]]["activeConference"] = {"conferenceRecord": name}
        return name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        await (await self._handle(Request(scope), body)).send_to(send)

    async def _handle(self, request: Request, body: bytes) -> CapturedResponse:
        path = request.url.path
        self.calls.append((request.method, path))
        if request.method == "POST" and path == TOKEN_PATH:
            return self._token(body)
        validator = self._calendar if path.startswith(CALENDAR_BASE) else self._meet
        try:
            validator.validate_request(request, body)
        except SpecViolation as violation:
            return self._refuse(violation)
        route = next(
            (
                (op, handler, m.groups())
                for verb, pattern, op, handler in self._routes
                if verb == request.method and (m := pattern.fullmatch(path))
            ),
            None,
        )
        if route is None:
            return json_response(*NOT_FOUND)
        operation, handler, args = route
        caller = self._caller(request, operation)
        if isinstance(caller, tuple):
            return json_response(*caller)
        query = {k: v[0] for k, v in parse_qs(request.url.query).items()}
        call = Call(caller, args, json.loads(body) if body else {}, query)
        if operation == "calendar.events.insert":
            fault = self.create_faults.pop()
            if fault is not None:
                return await answer_with_fault(
                    fault,
                    lambda: handler(call),
                    error_body=error_body(500, "Backend Error", "backendError", "INTERNAL"),
                    hang_seconds=self.hang_seconds,
                )
        status, answer = handler(call)
        captured = (
            CapturedResponse(status=status, headers=[], body=b"")
            if answer is None
            else json_response(status, answer)
        )
        if 200 <= status < 300:
            try:
                validator.validate_response(
                    request,
                    body,
                    status_code=status,
                    headers=captured.header_map(),
                    data=captured.body,
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

    def _caller(self, request: Request, operation: str) -> str | Reply:
        """The user the bearer token acts for, if it may call `operation`."""
        header = request.headers.get("authorization", "")
        entry = (
            self._tokens.get(header.removeprefix("Bearer "))
            if header.startswith("Bearer ")
            else None
        )
        if entry is None or entry[2] <= time.time():
            return UNAUTHENTICATED
        user, scopes, _ = entry
        spec = CALENDAR_SPEC if operation.startswith("calendar.") else MEET_SPEC
        if not any(alt <= scopes for alt in _security(str(spec))[operation]):
            return NO_SCOPE
        return user

    def _token(self, body: bytes) -> CapturedResponse:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return json_response(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self._public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=CLIENT_EMAIL,
                options={"require": ["iss", "sub", "aud", "iat", "exp"]},
            )
        except jwt.InvalidTokenError:
            return json_response(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
        if claims["exp"] - claims["iat"] > 3600:
            return json_response(400, {"error": "invalid_grant"})
        if claims["sub"] not in self.users:
            return json_response(
                400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
            )
        token = secrets.token_urlsafe(24)
        self.token_subjects.append(claims["sub"])
        self._tokens[token] = (
            claims["sub"],
            frozenset(str(claims["scope"]).split()),
            time.time() + 3599,
        )
        return json_response(
            200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    def _new_space(self, owner: str) -> JsonObject:
        space_id = secrets.token_urlsafe(9).replace("-", "a").replace("_", "b")
        code = _code()
        space: JsonObject = {
            "name": f"spaces/{space_id}",
            "meetingCode": code,
            "meetingUri": f"https://meet.google.com/{code}",
            "config": {
                "accessType": self.default_access_type,
                "entryPointAccess": "ALL",
                "moderation": "OFF",
                "moderationRestrictions": {
                    "chatRestriction": "NO_RESTRICTION",
                    "presentRestriction": "NO_RESTRICTION",
                },
            },
        }
        if self.phone_access:
            space["phoneAccess"] = [
                {"phoneNumber": "+15555550100", "pin": "123456789", "regionCode": "US"}
            ]
        self.spaces[space_id] = space
        self.owners[space_id] = owner
        return space

    def _conference(self, owner: str, request_id: str, event_id: str) -> JsonObject:
        space_id = self._by_request.get(request_id)
        space = self.spaces[space_id] if space_id else self._new_space(owner)
        self._by_request[request_id] = space["name"].split("/", 1)[1]
        self._polls[event_id] = self.pending_polls
        code = space["meetingCode"]
        return {
            "createRequest": {
                "requestId": request_id,
                "conferenceSolutionKey": {"type": "hangoutsMeet"},
                "status": {"statusCode": "success"},
            },
            "conferenceId": code,
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
            "entryPoints": [
                {
                    "entryPointType": "video",
                    "uri": space["meetingUri"],
                    "label": f"meet.google.com/{code}",
                }
            ],
        }

    def _shown(self, event: JsonObject) -> JsonObject:
        """The event as a read shows it: pending while `pending_polls` lasts."""
        left = self._polls.get(event["id"], 0)
        if left <= 0 or "conferenceData" not in event:
            return event
        self._polls[event["id"]] = left - 1
        pending = {
            "createRequest": {
                **event["conferenceData"]["createRequest"],
                "status": {"statusCode": "pending"},
            }
        }
        return {**event, "conferenceData": pending}

    def _insert(self, call: Call) -> Reply:
        event_id = str(call.payload.get("id") or secrets.token_hex(16))
        if not _EVENT_ID.match(event_id):
            return _err(400, "Invalid resource id value.", "invalid", "INVALID_ARGUMENT")
        if (call.user, event_id) in self.events:
            return _err(
                409, "The requested identifier already exists.", "duplicate", "ALREADY_EXISTS"
            )
        event: JsonObject = {
            **call.payload,
            "kind": "calendar#event",
            "id": event_id,
            "status": "confirmed",
            "etag": f'"{secrets.randbelow(10**15)}"',
            "created": _now(),
            "updated": _now(),
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "iCalUID": f"{event_id}@google.com",
            "sequence": 0,
            "eventType": "default",
            "creator": {"email": call.user, "self": True},
            "organizer": {"email": call.user, "self": True},
        }
        request = (call.payload.get("conferenceData") or {}).get("createRequest")
        if request and call.query.get("conferenceDataVersion") == "1":
            event["conferenceData"] = self._conference(call.user, request["requestId"], event_id)
            event["hangoutLink"] = event["conferenceData"]["entryPoints"][0]["uri"]
        else:
            event.pop("conferenceData", None)
        self.events[call.user, event_id] = event
        return 200, self._shown(event)

    def _get_event(self, call: Call) -> Reply:
        event = self.events.get((call.user, call.ids[1]))
        return NOT_FOUND if event is None else (200, self._shown(event))

    def _patch_event(self, call: Call) -> Reply:
        event = self.events.get((call.user, call.ids[1]))
        if event is None or event["status"] == "cancelled":
            return NOT_FOUND
        event.update({k: v for k, v in call.payload.items() if k != "conferenceData"})
        event["sequence"] += 1
        event["updated"] = _now()
        return 200, event

    def _delete_event(self, call: Call) -> Reply:
        event = self.events.get((call.user, call.ids[1]))
        if event is None:
            return NOT_FOUND
        if event["status"] == "cancelled":
            return _err(410, "Resource has been deleted", "deleted", "GONE")
        event["status"] = "cancelled"  # still readable, as Google keeps deleted events
        return 200, None

    def _space(self, call: Call, *, by_code: bool) -> JsonObject | Reply:
        """The space named in the path; a meeting code is an alias for reads only."""
        key = call.ids[0]
        space = self.spaces.get(key)
        if space is None and by_code:
            space = next((s for s in self.spaces.values() if s["meetingCode"] == key.lower()), None)
        if space is None:
            return NOT_FOUND
        return space if self.owners[space["name"].split("/", 1)[1]] == call.user else NOT_OWNER

    def _get_space(self, call: Call) -> Reply:
        space = self._space(call, by_code=True)
        return space if isinstance(space, tuple) else (200, space)

    def _patch_space(self, call: Call) -> Reply:
        space = self._space(call, by_code=False)
        if isinstance(space, tuple):
            return space
        if self.refuse_config:
            return NOT_OWNER
        update = call.payload.get("config") or {}
        for path in filter(None, call.query.get("updateMask", "").split(",")):
            parts = path.strip().split(".")
            if parts[0] != "config" or len(parts) not in (2, 3):
                return _err(400, f"Invalid update mask path: {path}", "invalid", "INVALID_ARGUMENT")
            if parts[1] == "accessType" and self.drop_access_type:
                continue
            source, target = update, space["config"]
            for part in parts[1:-1]:
                source = source.get(part) or {}
                target = target.setdefault(part, {})
            if parts[-1] in source:
                target[parts[-1]] = source[parts[-1]]
        return 200, space

    def _end(self, call: Call) -> Reply:
        space = self._space(call, by_code=False)
        if isinstance(space, tuple):
            return space
        active = space.pop("activeConference", None)
        if not active:
            return _err(400, "No active conference.", "failedPrecondition", "FAILED_PRECONDITION")
        self.records[active["conferenceRecord"].split("/", 1)[1]]["endTime"] = _now()
        self.ended.append(space["name"])
        return 200, {}

    def _list_records(self, call: Call) -> Reply:
        match = re.fullmatch(r'space\.name = "(spaces/[^"]+)"', call.query.get("filter", ""))
        if match is None:
            return _err(400, "Invalid filter.", "invalid", "INVALID_ARGUMENT")
        found = [r for r in self.records.values() if r["space"] == match.group(1)]
        return 200, {"conferenceRecords": found}

    def _list_participants(self, call: Call) -> Reply:
        if call.ids[0] not in self.records:
            return NOT_FOUND
        return 200, {"participants": self.participants.get(call.ids[0], [])}
