"""Request and response bodies for the incidents API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        """PostgreSQL's text cannot hold NUL. JSON bodies are refused earlier (nul_guard);
        the report form is multipart, which that guard does not read, so it is checked here."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


class AttachmentIn(_Body):
    filename: str = Field(min_length=1, max_length=200)
    content_type: str = Field(min_length=3, max_length=100)
    content_base64: str = Field(min_length=1, description="The file's bytes, base64-encoded.")


class IncidentCreate(_Body):
    meeting_id: str = Field(min_length=1, max_length=64)
    summary: str = Field(min_length=3, max_length=200, description="One line: what happened.")
    statement: str = Field(
        min_length=1, max_length=20_000, description="The reporter's own account, in full."
    )
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=20)


class NoteCreate(_Body):
    body: str = Field(min_length=1, max_length=10_000)


class TransitionCreate(_Body):
    status: Literal["triaged", "resolved"]
    note: str = Field(default="", max_length=10_000)


class FollowUpUpdate(_Body):
    """Only the fields sent are changed."""

    fixes_applied: list[str] | None = Field(default=None, max_length=50)
    law_enforcement_contacted: bool | None = None
    law_enforcement_reference: str | None = Field(default=None, max_length=200)
    provider_notice_sent: bool | None = None


class AttachmentRead(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str


class NoteRead(BaseModel):
    author: str
    body: str
    from_status: str | None
    to_status: str | None
    created_at: datetime


class FixRead(BaseModel):
    code: str
    control: str | None
    reason: str
    action: str
    href: str
    applied: bool


class IncidentSummary(BaseModel):
    id: str
    meeting_id: str
    summary: str
    status: str
    reporter_email: str
    created_at: datetime


class IncidentList(BaseModel):
    items: list[IncidentSummary]


class IncidentRead(BaseModel):
    id: str
    meeting_id: str
    summary: str
    status: str
    reporter: dict[str, str]
    evidence_sha256: str
    evidence_verified: bool
    evidence: dict[str, Any]
    attachments: list[AttachmentRead]
    notes: list[NoteRead]
    suggested_fixes: list[FixRead]
    follow_ups: dict[str, Any]
    created_at: datetime
    updated_at: datetime
