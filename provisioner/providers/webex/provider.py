"""Webex Meetings as a `MeetingProvider`: one new scheduled meeting per request.

What Webex enforces per meeting, and therefore what `capabilities` claims:

    control            how (POST /meetings)                             confirmed by
    -----------------  -----------------------------------------------  ------------------
    passcode           `password` from `secrets` (upper, lower, digit)  GET meeting
    waiting_room       `unlockedMeetingJoinSecurity: allowJoinWithLobby` GET meeting
                       (people not on the invite wait in the lobby)
    join_before_host   `enabledJoinBeforeHost: false`                   GET meeting
    presenters         `attendeePrivileges.enabledShareContent`         GET meeting
    chat               `meetingOptions.enabledChat` and attendee chat   GET meeting
                       privileges (host only: chat with host only)
    mute_on_entry      `audioConnectionOptions.muteAttendeeUponEntry`   GET meeting

Not claimed:
- sign_in_required: the API's `requireAttendeeLogin` applies to webinars only; for meetings,
  sign-in is a site setting in Control Hub that this API can neither set nor read. Under a
  policy that requires sign-in, the service therefore refuses Webex.
- per_invitee_links: invitees are recorded (they bypass the lobby once signed in and show
  as invitees in the participant list) but everyone gets the same `webLink`; the API's
  personal join links skip sign-in and expire within an hour, so they are not used.
- invitee_domains, max_duration: Webex does not restrict either.

In-meeting controls (features EXPEL and LOCK): `PUT /meetingParticipants/{id}` with
`expel: true` removes one participant, and `PUT /meetings/controls` with `locked: true`
locks a running meeting. Both need the token's user to be the host or a co-host. Webex
documents that a participant using the Webex Meetings App may not see an expel applied
(the API reports success) unless closed captions or the Webex Assistant are on; the
README ("In-meeting controls") repeats this for hosts.

The compliance scan (`list_upcoming`, `apply_settings`) is in `inventory.py`.

Webex sends no email of its own (`sendEmail: false` everywhere): provisioner delivers.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx

from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import (
    ExistingMeeting,
    Feature,
    JoinDetails,
    MeetingRef,
    MeetingSpec,
    ObservedSettings,
    Participant,
    Person,
    ProvisionedMeeting,
)
from provisioner.providers.errors import ProviderNotFound, ProviderRejected
from provisioner.providers.webex.client import PROVIDER_NAME, JsonObject, WebexClient
from provisioner.providers.webex.config import WebexConfig
from provisioner.providers.webex.inventory import existing_meeting, fix_body

TAG_PREFIX = "provisioner:"
LOBBY = "allowJoinWithLobby"
BLOCK = "blockFromJoin"
MIN_PASSCODE_LENGTH = 10
# No 0/O/o, 1/I/l/i: the passcode is read from an email and typed into a dialog.
_UPPER = "ABCDEFGHJKMNPQRSTUVWXYZ"
_LOWER = "abcdefghjkmnpqrstuvwxyz"
_DIGITS = "23456789"


def generate_passcode(length: int) -> str:
    """Random password from `secrets` with the upper, lower and digit most sites demand."""
    alphabet = _UPPER + _LOWER + _DIGITS
    while True:
        code = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in group for c in code) for group in (_UPPER, _LOWER, _DIGITS)):
            return code


def integration_tag(spec: MeetingSpec) -> str:
    """Our id as a Webex integration tag (<= 64 chars): searchable, private to our app."""
    return TAG_PREFIX + spec.meeting_id


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _section(meeting: JsonObject, key: str) -> JsonObject:
    value = meeting.get(key)
    return value if isinstance(value, dict) else {}


def _when(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class WebexProvider:
    """Webex Meetings through a service app or integration; see the module docstring."""

    name: str = PROVIDER_NAME
    config_model: ClassVar[type[WebexConfig]] = WebexConfig
    capabilities: frozenset[Control] = frozenset(
        {
            Control.PASSCODE,
            Control.WAITING_ROOM,
            Control.JOIN_BEFORE_HOST,
            Control.PRESENTERS,
            Control.CHAT,
            Control.MUTE_ON_ENTRY,
        }
    )
    features: frozenset[Feature] = frozenset(
        {
            Feature.RESCHEDULE,
            Feature.END_FOR_ALL,
            Feature.PARTICIPANTS,
            Feature.EXPEL,
            Feature.LOCK,
        }
    )

    def __init__(
        self,
        config: WebexConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,  # noqa: S311 (jitter, not secrecy)
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self.client = WebexClient(config, transport=transport, sleep=sleep, rand=rand, clock=clock)

    @classmethod
    def from_config(cls, config: WebexConfig) -> WebexProvider:
        """Build the provider from its validated settings (used by the registry)."""
        return cls(config)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- request bodies ---------------------------------------------------------------

    def _check(self, spec: MeetingSpec) -> None:
        """Refuse what Webex cannot do as asked, before anything is created."""
        if spec.start.tzinfo is None:
            raise ProviderRejected(
                "webex: start must be timezone-aware", provider=self.name, field="start"
            )
        if spec.duration.total_seconds() <= 0:
            raise ProviderRejected(
                "webex: duration must be positive", provider=self.name, field="duration"
            )
        wanted = spec.settings.passcode_min_length
        if spec.settings.passcode_required and wanted > self._config.max_passcode_length:
            raise ProviderRejected(
                f"webex: the site takes passwords of up to {self._config.max_passcode_length} "
                f"characters; the policy asks for at least {wanted}",
                provider=self.name,
                field="settings.passcode_min_length",
            )

    @staticmethod
    def settings_body(settings: MeetingSettings) -> JsonObject:
        """The policy as Webex meeting attributes (shared by create and update)."""
        chat_on = settings.chat is not Chat.OFF
        everyone_chats = settings.chat is Chat.EVERYONE
        return {
            "enabledJoinBeforeHost": settings.join_before_host,
            "enableConnectAudioBeforeHost": False,
            "unlockedMeetingJoinSecurity": LOBBY if settings.waiting_room else "allowJoin",
            "enabledAutoRecordMeeting": False,
            "allowAnyUserToBeCoHost": False,
            "allowFirstUserToBeCoHost": False,
            "publicMeeting": False,
            "meetingOptions": {"enabledChat": chat_on},
            "attendeePrivileges": {
                "enabledShareContent": settings.presenters is Presenters.EVERYONE,
                "enabledChatHost": chat_on,
                "enabledChatPresenter": everyone_chats,
                "enabledChatOtherParticipants": everyone_chats,
            },
            "audioConnectionOptions": {"muteAttendeeUponEntry": settings.mute_on_entry},
        }

    def _host(self, spec: MeetingSpec) -> JsonObject:
        return {"hostEmail": spec.host.email} if self._config.act_for_host else {}

    def meeting_body(self, spec: MeetingSpec, *, passcode: str | None) -> JsonObject:
        body: JsonObject = {
            "title": spec.topic[:128],
            "start": _utc(spec.start),
            "end": _utc(spec.end),
            "timezone": spec.timezone,
            "scheduledType": "meeting",
            **self.settings_body(spec.settings),
            "integrationTags": [integration_tag(spec)],
            "invitees": [
                {"email": p.email.strip(), "displayName": p.name[:128] or p.email, "coHost": False}
                for p in _unique(spec)
            ],
            "sendEmail": False,
            **self._host(spec),
        }
        if passcode is not None:
            body["password"] = passcode
        if self._config.site_url:
            body["siteUrl"] = self._config.site_url
        return body

    # -- lifecycle --------------------------------------------------------------------

    async def create(self, spec: MeetingSpec, *, idempotency_key: str) -> ProvisionedMeeting:
        """Create the meeting with its invitees, once whatever the retries."""
        self._check(spec)
        length = max(spec.settings.passcode_min_length, MIN_PASSCODE_LENGTH)
        passcode = (
            generate_passcode(min(length, self._config.max_passcode_length))
            if spec.settings.passcode_required
            else None
        )
        window = (_utc(spec.start - timedelta(days=1)), _utc(spec.end + timedelta(days=1)))
        meeting = await self.client.create_meeting(
            self.meeting_body(spec, passcode=passcode), tag=integration_tag(spec), window=window
        )
        return self._provisioned(spec, meeting)

    def _provisioned(self, spec: MeetingSpec, meeting: JsonObject) -> ProvisionedMeeting:
        join = JoinDetails(url=str(meeting["webLink"]), passcode=meeting.get("password") or None)
        enforced = {
            Control.WAITING_ROOM,
            Control.JOIN_BEFORE_HOST,
            Control.PRESENTERS,
            Control.CHAT,
            Control.MUTE_ON_ENTRY,
        }
        if spec.settings.passcode_required:
            enforced.add(Control.PASSCODE)
        reference = {"host_email": spec.host.email}
        if isinstance(meeting.get("meetingNumber"), str):
            reference["meeting_number"] = meeting["meetingNumber"]
        return ProvisionedMeeting(
            provider_meeting_id=str(meeting["id"]),
            host=join,
            shared=join,
            personal={},
            enforced=frozenset(enforced),
            reference=reference,
        )

    async def verify(self, spec: MeetingSpec, created: ProvisionedMeeting) -> ObservedSettings:
        meeting = await self.client.get_meeting(
            created.provider_meeting_id, host_email=spec.host.email
        )
        found = self.compare(spec, created, meeting)
        return ObservedSettings(confirmed=self.capabilities - set(found), mismatched=found)

    @staticmethod
    def compare(
        spec: MeetingSpec, created: ProvisionedMeeting, meeting: JsonObject
    ) -> dict[Control, str]:
        """Each control whose read-back is weaker than the policy (never a secret)."""
        settings = spec.settings
        found: dict[Control, str] = {}
        password = meeting.get("password") or ""
        if settings.passcode_required:
            if not password:
                found[Control.PASSCODE] = "the meeting has no password"
            elif password != created.host.passcode:
                found[Control.PASSCODE] = "the password differs from the one issued"
            elif len(password) < settings.passcode_min_length:
                found[Control.PASSCODE] = (
                    f"the password is shorter than {settings.passcode_min_length}"
                )
        security = meeting.get("unlockedMeetingJoinSecurity")
        if settings.waiting_room and security not in (LOBBY, BLOCK):
            found[Control.WAITING_ROOM] = f"unlockedMeetingJoinSecurity is {security!r}"
        if not settings.join_before_host and meeting.get("enabledJoinBeforeHost") is not False:
            found[Control.JOIN_BEFORE_HOST] = "enabledJoinBeforeHost is on"
        privileges = _section(meeting, "attendeePrivileges")
        if (
            settings.presenters is Presenters.HOST_ONLY
            and privileges.get("enabledShareContent") is not False
        ):
            found[Control.PRESENTERS] = "attendees may share content"
        chat_on = _section(meeting, "meetingOptions").get("enabledChat") is not False
        if settings.chat is Chat.OFF and chat_on:
            found[Control.CHAT] = "chat is enabled"
        elif (
            settings.chat is Chat.HOST_ONLY
            and chat_on
            and (
                privileges.get("enabledChatOtherParticipants") is not False
                or privileges.get("enabledChatPresenter") is not False
            )
        ):
            found[Control.CHAT] = "attendees may chat with other attendees"
        audio = _section(meeting, "audioConnectionOptions")
        if settings.mute_on_entry and audio.get("muteAttendeeUponEntry") is not True:
            found[Control.MUTE_ON_ENTRY] = "muteAttendeeUponEntry is off"
        return found

    async def update(self, spec: MeetingSpec, meeting: MeetingRef) -> ProvisionedMeeting:
        """Reschedule in place (same id, link and password), re-apply the settings, and
        invite anyone new."""
        self._check(spec)
        body: JsonObject = {
            "title": spec.topic[:128],
            "start": _utc(spec.start),
            "end": _utc(spec.end),
            "timezone": spec.timezone,
            **self.settings_body(spec.settings),
            "sendEmail": False,
            **self._host(spec),
        }
        updated = await self.client.update_meeting(meeting.provider_meeting_id, body)
        known = {
            str(i.get("email", "")).lower()
            for i in await self.client.invitees(
                meeting.provider_meeting_id, host_email=spec.host.email
            )
        }
        for person in _unique(spec):
            if person.email.strip().lower() not in known:
                await self.client.add_invitee(
                    {
                        "meetingId": meeting.provider_meeting_id,
                        "email": person.email.strip(),
                        "displayName": person.name[:128] or person.email,
                        "coHost": False,
                        "sendEmail": False,
                        **self._host(spec),
                    }
                )
        return self._provisioned(spec, updated)

    async def delete(self, meeting: MeetingRef) -> None:
        await self.client.delete_meeting(
            meeting.provider_meeting_id, host_email=meeting.reference.get("host_email", "")
        )

    async def end(self, meeting: MeetingRef) -> None:
        await self.client.end_meeting(meeting.provider_meeting_id)

    async def list_participants(self, meeting: MeetingRef) -> Sequence[Participant]:
        people = await self.client.participants(
            meeting.provider_meeting_id, host_email=meeting.reference.get("host_email", "")
        )
        return [
            Participant(
                name=str(p.get("displayName") or ""),
                email=str(p["email"]).lower() if p.get("email") else None,
                joined_at=_when(p.get("joinedTime")),
                left_at=_when(p.get("leftTime")),
                provider_participant_id=str(p["id"]) if p.get("id") else None,
            )
            for p in people
        ]

    async def expel(self, meeting: MeetingRef, participant_id: str) -> None:
        """Remove one participant (`provider_participant_id` from `list_participants`).

        Only someone Webex lists in this meeting is expelled: an id from another meeting
        is refused before any change, so a caller cannot reach into a meeting it was not
        asked about."""
        present = {p.provider_participant_id for p in await self.list_participants(meeting)}
        if participant_id not in present:
            raise ProviderNotFound("webex: no such participant in this meeting", provider=self.name)
        await self.client.update_participant(participant_id, {"expel": True})

    async def lock(self, meeting: MeetingRef) -> None:
        """Lock the running meeting: nobody new gets in, whatever their invitation."""
        answer = await self.client.update_controls(meeting.provider_meeting_id, {"locked": True})
        if answer.get("locked") is not True:
            raise ProviderRejected(
                "webex: the meeting did not lock", provider=self.name, field="locked"
            )

    async def list_upcoming(
        self, *, hosts: Sequence[str], until: datetime
    ) -> Sequence[ExistingMeeting]:
        """Scheduled meetings from now to `until`, per host (the token's own user when
        `hosts` is empty; naming other hosts needs an admin token and `act_for_host`)."""
        window = {
            "meetingType": "scheduledMeeting",
            "from": _utc(datetime.now(UTC)),
            "to": _utc(until),
        }
        found: list[ExistingMeeting] = []
        for host in list(dict.fromkeys(h.strip().lower() for h in hosts)) or [""]:
            params = {**window, **(self.client.host_params(host) if host else {})}
            for item in await self.client.list_meetings(params):
                if item.get("state") in ("ended", "missed", "expired"):
                    continue
                found.append(existing_meeting(item, host or str(item.get("hostEmail", ""))))
        return found

    async def apply_settings(
        self, meeting: ExistingMeeting, settings: MeetingSettings
    ) -> frozenset[Control]:
        """PATCH the weaker settings of the whole series; the link stays the same. A
        personal-room meeting cannot be changed through this API (the host moves it)."""
        length = min(
            max(settings.passcode_min_length, MIN_PASSCODE_LENGTH),
            self._config.max_passcode_length,
        )
        body, changed = fix_body(meeting, settings, password_length=length)
        if body:
            series = meeting.reference.get("series_id") or meeting.provider_meeting_id
            host = meeting.reference.get("host_email") or meeting.host_email
            await self.client.update_meeting(
                series, {**body, "sendEmail": False, **self.client.host_params(host)}
            )
        return changed

    async def find_created(
        self, meeting_id: str, *, host_email: str, start: datetime, end: datetime
    ) -> MeetingRef | None:
        """The Webex meeting a create for our `meeting_id` left behind, if any (for
        reconciling a crash between create and commit)."""
        window = (_utc(start - timedelta(days=1)), _utc(end + timedelta(days=1)))
        host = host_email if self._config.act_for_host else ""
        found = await self.client.find_meeting(TAG_PREFIX + meeting_id, window, host_email=host)
        if found is None:
            return None
        return MeetingRef(str(found["id"]), {"host_email": host_email})


def _unique(spec: MeetingSpec) -> list[Person]:
    """Invitees once each, by address, in request order."""
    seen: set[str] = set()
    people: list[Person] = []
    for person in spec.invitees:
        key = person.email.strip().lower()
        if key not in seen:
            seen.add(key)
            people.append(person)
    return people
