"""API shapes for meetings, named by direction: MeetingCreate in, MeetingRead / MeetingList out.

`MeetingRead.host_join` carries the host's link and passcode; it is filled only for the
host (the single caller who may see it) and is never logged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from provisioner.policy.resolve import SettingsRequest

MAX_INVITEES = 5000  # a hard ceiling; `api.max_invitees` sets the configured one below it

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@cache
def known_zones() -> frozenset[str]:
    """The IANA zone names, read once: `available_timezones()` walks the tzdata tree on
    every call (profiled at about 7 ms, the largest single cost of a create request)."""
    return frozenset(available_timezones())


def _no_control_chars(value: str) -> str:
    """Names and topics end up in mail headers and .ics lines: no CR/LF, no escapes."""
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


Text200 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
]

# How far ahead a meeting may start. A link is a credential (Jitsi's tokens stay valid
# until the meeting ends), and a date far enough out cannot even be shifted to UTC.
MAX_AHEAD = timedelta(days=5 * 366)


def _not_too_far_ahead(value: datetime) -> datetime:
    """Checked before the zone is applied: within a day, the zone makes no difference."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a date within 5 years from now") from None
    if utc > datetime.now(UTC) + MAX_AHEAD:
        raise ValueError("must be a date within 5 years from now")
    return value


Start = Annotated[datetime, AfterValidator(_not_too_far_ahead)]


class InviteeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    name: Text200
    channel: str = Field(
        default="email",
        pattern=r"^[a-z_]{1,40}$",
        description="How this person gets their link: `email` (with .ics), or a configured "
        "chat channel (`slack`, `teams_chat`) as a direct message; falls back to email "
        "when the chat user cannot be found.",
    )

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class MeetingCreate(BaseModel):
    """A request for one new meeting.

    `start` may carry an offset; without one it is read in `timezone`.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "topic": "Quarterly planning",
                    "start": "2030-03-04T15:00:00",
                    "duration_minutes": 45,
                    "timezone": "Europe/Berlin",
                    "invitees": [{"email": "ana@example.com", "name": "Ana Lima"}],
                    "provider": "jitsi",
                    "settings": {"chat": "off"},
                }
            ]
        },
    )

    topic: Text200
    start: Start
    duration_minutes: int = Field(ge=1, le=1440)
    timezone: str = Field(min_length=1, max_length=64)
    invitees: list[InviteeIn] = Field(min_length=1, max_length=MAX_INVITEES)
    provider: str | None = Field(
        default=None, min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$"
    )
    settings: SettingsRequest | None = None
    on_behalf_of: InviteeIn | None = Field(
        default=None,
        description="Calendar integrations only (scope meetings:write:on_behalf): the "
        "employee who becomes the host.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in known_zones():
            raise ValueError("must be an IANA time zone name such as 'Europe/Berlin'")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name such as 'Europe/Berlin'") from None
        return value

    @model_validator(mode="after")
    def _aware_start(self) -> MeetingCreate:
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=ZoneInfo(self.timezone))
        return self


class MeetingUpdate(BaseModel):
    """A reschedule: any of these, the rest stays. Invitees get an updated invitation."""

    model_config = ConfigDict(extra="forbid")

    topic: Text200 | None = None
    start: Start | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=1440)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    invitees: list[InviteeIn] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INVITEES,
        description="The complete new invite list. People added get an invitation; people "
        "left out get a cancellation and, where the provider allows (Zoom registrants), "
        "their personal link is revoked.",
    )

    @field_validator("topic", "start", "duration_minutes", "timezone", "invitees", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # An explicit null changes nothing, yet would re-invite everyone at a new SEQUENCE.
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its value")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in known_zones():
            raise ValueError("must be an IANA time zone name such as 'Europe/Berlin'")
        return value

    @model_validator(mode="after")
    def _something_changes(self) -> MeetingUpdate:
        if not self.model_fields_set:
            raise ValueError(
                "name at least one of topic, start, duration_minutes, timezone, invitees"
            )
        return self

    def aware_start(self, timezone: str) -> datetime | None:
        """`start` with its offset, or read in `timezone` when it has none."""
        if self.start is None or self.start.tzinfo is not None:
            return self.start
        return self.start.replace(tzinfo=ZoneInfo(timezone))


class JoinRead(BaseModel):
    url: str
    passcode: str | None


class InviteeRead(BaseModel):
    email: str
    name: str
    channel: str
    personal_link: bool
    delivery_status: str | None


class MeetingRead(BaseModel):
    id: str
    topic: str
    provider: str
    state: str
    start: datetime
    end: datetime
    timezone: str
    settings: dict[str, Any]
    enforced: list[str]
    not_enforced: list[str]
    invitees: list[InviteeRead]
    host_join: JoinRead | None = Field(
        default=None, description="The host's own link and passcode; shown to the host only."
    )
    created_at: datetime


class MeetingSummary(BaseModel):
    id: str
    topic: str
    provider: str
    state: str
    start: datetime
    end: datetime
    timezone: str
    invitee_count: int
    created_at: datetime


class MeetingList(BaseModel):
    data: list[MeetingSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last."
    )
