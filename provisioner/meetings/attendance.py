"""Who is in the call compared with who was invited.

The provider's participant list is matched against the host and the current invitees:
by email where the provider reports one (a strong match: the provider signed that person
in), otherwise by display name (a weak match: anyone can type a name). Everyone else is
flagged as unknown. A name that copies someone already present under their own email is
flagged too: that is what an impostor looks like.

`compare_attendance` is pure and the report is a plain pydantic model, so the watcher, the
API and an incident's evidence snapshot all use the same result.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from provisioner.auth.principal import Principal
from provisioner.db import utcnow
from provisioner.meetings.access import get_meeting_for_actor
from provisioner.meetings.models import Meeting
from provisioner.meetings.service import Provisioning
from provisioner.providers.base import Feature, MeetingProvider, MeetingRef, Participant
from provisioner.providers.errors import ProviderUnsupported

MatchStatus = Literal["matched", "weak", "unknown"]


class InvitedPerson(BaseModel):
    email: str
    name: str
    role: Literal["host", "invitee"]
    present: bool
    # True when the only evidence of presence is a display name.
    present_by_name_only: bool = False


class ParticipantMatch(BaseModel):
    name: str
    email: str | None
    participant_id: str | None
    joined_at: datetime | None
    left_at: datetime | None
    status: MatchStatus
    matched_by: Literal["email", "name"] | None = None
    matched_email: str | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        """A stable, non-secret key for this participant (the watcher alerts once per key)."""
        if self.participant_id:
            return f"id:{self.participant_id}"[:255]
        basis = f"{(self.email or '').lower()}|{_normal(self.name)}"
        return "hash:" + hashlib.sha256(basis.encode()).hexdigest()


class AttendanceReport(BaseModel):
    """The comparison at `checked_at`; JSON-able with `model_dump(mode="json")`."""

    meeting_id: str
    provider: str
    checked_at: datetime
    invited: list[InvitedPerson]
    participants: list[ParticipantMatch]

    @property
    def unknown(self) -> list[ParticipantMatch]:
        return [p for p in self.participants if p.status == "unknown"]

    @property
    def weak(self) -> list[ParticipantMatch]:
        return [p for p in self.participants if p.status == "weak"]


def _normal(name: str) -> str:
    """Case, accents' composition and spacing do not make a different name."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def compare_attendance(
    meeting: Meeting, participants: Sequence[Participant], *, checked_at: datetime | None = None
) -> AttendanceReport:
    """Match each participant to the host or a current invitee.

    A participant with an email is matched by email only: an email that is not invited is
    unknown even if the name fits someone invited. A name shared by two invited people is
    not a match for either (we cannot tell them apart).
    """
    invited: dict[str, tuple[str, Literal["host", "invitee"]]] = {
        meeting.host_email.lower(): (meeting.host_name, "host")
    }
    for invitee in meeting.current_invitees:
        invited.setdefault(invitee.email.lower(), (invitee.name, "invitee"))
    by_name: dict[str, list[str]] = {}
    for email, (name, _) in invited.items():
        by_name.setdefault(_normal(name), []).append(email)

    present_by_email = {
        p.email.lower() for p in participants if p.email and p.email.lower() in invited
    }
    present_by_name: set[str] = set()
    matches: list[ParticipantMatch] = []
    for participant in participants:
        match = ParticipantMatch(
            name=participant.name,
            email=participant.email,
            participant_id=participant.provider_participant_id,
            joined_at=participant.joined_at,
            left_at=participant.left_at,
            status="unknown",
        )
        seen_as = participant.email.lower() if participant.email else None
        candidates = by_name.get(_normal(participant.name), [])
        if seen_as is not None:
            if seen_as in invited:
                match.status, match.matched_by, match.matched_email = "matched", "email", seen_as
            elif candidates:
                match.note = "the name of someone invited, but signed in with another email"
            else:
                match.note = "signed in with an email that is not invited"
        elif len(candidates) == 1 and candidates[0] in present_by_email:
            match.note = f"same name as {candidates[0]}, who is present under their own email"
        elif len(candidates) == 1:
            match.status, match.matched_by, match.matched_email = "weak", "name", candidates[0]
            present_by_name.add(candidates[0])
        elif len(candidates) > 1:
            match.note = "the name of more than one invited person; cannot tell who"
        else:
            match.note = "not on the invite list"
        matches.append(match)

    return AttendanceReport(
        meeting_id=meeting.id,
        provider=meeting.provider,
        checked_at=checked_at or utcnow(),
        invited=[
            InvitedPerson(
                email=email,
                name=name,
                role=role,
                present=email in present_by_email or email in present_by_name,
                present_by_name_only=email in present_by_name and email not in present_by_email,
            )
            for email, (name, role) in invited.items()
        ],
        participants=matches,
    )


def meeting_ref(meeting: Meeting) -> MeetingRef | None:
    if meeting.provider_meeting_id is None:
        return None
    return MeetingRef(meeting.provider_meeting_id, dict(meeting.reference))


async def check_attendance(
    deps: Provisioning, *, meeting_id: str, actor: Principal, provider: MeetingProvider
) -> AttendanceReport:
    """The live or past participants of one meeting compared with its invite list.

    Raises:
        MeetingNotFound: no such meeting, or the actor is neither its host nor a responder.
        ProviderUnsupported: the provider has no participant list.
        ProviderError: the provider failed (ProviderNotFound: the meeting is gone there).
    """
    if Feature.PARTICIPANTS not in provider.features:
        raise ProviderUnsupported(
            f"{provider.name} has no API to list who is in a meeting: open the participant "
            "list in the meeting window and compare it with the invitees",
            provider=provider.name,
            feature=Feature.PARTICIPANTS,
        )
    async with deps.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=actor)
        ref = meeting_ref(meeting)
        if ref is None:
            return compare_attendance(meeting, [])
    participants = await provider.list_participants(ref)
    return compare_attendance(meeting, participants)
