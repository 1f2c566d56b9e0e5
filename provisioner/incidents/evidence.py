"""The evidence snapshot: what we knew about a meeting when an incident was reported.

A report is only as good as the records behind it, and those records keep changing (the
provider's settings, who is in the call, the outbox). So the moment a report is filed we
read everything once and freeze it: the meeting's settings as the provider reports them
now, the participant list, the invitees and deliveries (never a join secret), the audit
trail, a timeline, the statement and the attachments' hashes. The snapshot is canonical
JSON (sorted keys, no spaces, UTF-8) hashed with SHA-256; the exact bytes are stored, and
every read recomputes the hash and compares it with the stored one and with the hash the
hash-chained audit log recorded when the report was filed, so a changed row is caught even
if whoever changed it also rewrote the hash column.

A provider read that fails or is not supported never fails the report: the snapshot says
what could not be read and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.models import AuditEvent
from provisioner.crypto import CipherError, FieldCipher
from provisioner.delivery.models import Delivery
from provisioner.delivery.notices import NOTICE_ROLE
from provisioner.meetings.codec import settings_from_json
from provisioner.meetings.joins import open_join
from provisioner.meetings.models import Meeting
from provisioner.policy.model import Control
from provisioner.providers.base import (
    Feature,
    JoinDetails,
    MeetingProvider,
    MeetingRef,
    MeetingSpec,
    Participant,
    Person,
    ProvisionedMeeting,
)
from provisioner.providers.errors import ProviderError, ProviderNotFound
from provisioner.redaction import local_scrubber, scrub_text

log = structlog.get_logger(__name__)

FORMAT = "provisioner.incident-evidence/1"
PROVIDER_READ_TIMEOUT = 30.0  # each provider client has its own, shorter, timeouts
MAX_AUDIT_EVENTS = 500
_INCIDENT_NOTICE = "incident."  # the `kind` prefix of reporting's notices (notify.KIND)
_CONTROLS = frozenset(c.value for c in Control)


def canonical_json(value: Any) -> str:
    """The one serialisation that is hashed: sorted keys, no whitespace, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _incident_notice(delivery: Delivery) -> bool:
    notice = delivery.notice if delivery.role == NOTICE_ROLE else None
    return isinstance(notice, dict) and str(notice.get("kind", "")).startswith(_INCIDENT_NOTICE)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Records:
    """What the database knows, read in one short transaction before the provider calls."""

    meeting: dict[str, Any]
    invitees: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    audit_trail: list[dict[str, Any]]


async def read_records(session: AsyncSession, meeting: Meeting) -> Records:
    """The meeting, invitees, deliveries and audit trail, with no join secret anywhere.

    Notices about earlier incident reports are left out, with their audit events: they
    are the reporting's own mail (to a reporter's manager, to HR/security), not a record
    of the meeting, and a later report's reader (the host, say) may not read the earlier
    report they would point to.
    """
    deliveries = [
        delivery
        for delivery in await session.scalars(
            select(Delivery)
            .where(Delivery.meeting_id == meeting.id)
            .order_by(Delivery.created_at, Delivery.id)
        )
        if not _incident_notice(delivery)
    ]
    targets = {meeting.id, *(d.id for d in deliveries)}
    if meeting.rotated_from_id:
        targets.add(meeting.rotated_from_id)
    events = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target_id.in_(targets))
            .order_by(AuditEvent.id)
            .limit(MAX_AUDIT_EVENTS)
        )
    ).all()
    return Records(
        meeting={
            "id": meeting.id,
            "topic": meeting.topic,
            "provider": meeting.provider,
            "provider_meeting_id": meeting.provider_meeting_id,
            "state": meeting.state,
            "starts_at": iso(meeting.starts_at),
            "ends_at": iso(meeting.ends_at),
            "timezone": meeting.timezone,
            "host": {"email": meeting.host_email, "name": meeting.host_name},
            "created_at": iso(meeting.created_at),
            "rotated_from_id": meeting.rotated_from_id,
        },
        invitees=[
            {
                "email": i.email,
                "name": i.name,
                "channel": i.channel,
                "personal_link": i.personal_link,
                "removed_at": iso(i.removed_at),
            }
            for i in meeting.invitees
        ],
        deliveries=[
            {
                "id": d.id,
                "role": d.role,
                "channel": d.channel,
                "recipient_email": d.recipient_email,
                "method": d.method,
                "sequence": d.sequence,
                "status": d.status,
                "attempts": d.attempts,
                "sent_at": iso(d.sent_at),
                "created_at": iso(d.created_at),
            }
            for d in deliveries
        ],
        audit_trail=[
            {
                "id": e.id,
                "at": iso(e.occurred_at),
                "actor": e.actor,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "details": e.details,
                "hash": e.hash,
            }
            for e in events
        ],
    )


@dataclass(frozen=True)
class ProviderView:
    """The provider's side: settings read back and the participant list, or why not."""

    settings: dict[str, Any]
    participants: dict[str, Any]


def _spec_and_created(
    meeting: Meeting, cipher: FieldCipher
) -> tuple[MeetingSpec, ProvisionedMeeting]:
    """Rebuild what `verify` compares, from the stored meeting.

    The join details are opened in memory only because some providers (Jitsi) verify the
    links themselves; the report's own scrubber (`report_scrubber`) keeps them out of the
    snapshot.
    """
    current = meeting.current_invitees
    spec = MeetingSpec(
        meeting_id=meeting.id,
        topic=meeting.topic,
        start=meeting.starts_at,
        duration=meeting.ends_at - meeting.starts_at,
        timezone=meeting.timezone,
        host=Person(email=meeting.host_email, name=meeting.host_name),
        invitees=tuple(Person(email=i.email, name=i.name) for i in current),
        settings=settings_from_json(meeting.settings),
    )

    def open_(sealed: str, table: str, row_id: str) -> JoinDetails:
        return open_join(cipher, sealed, table=table, row_id=row_id)

    host = (
        open_(meeting.host_join_secret, "meetings", meeting.id)
        if meeting.host_join_secret
        else JoinDetails(url="")
    )
    personal: dict[str, JoinDetails] = {}
    shared: JoinDetails | None = None
    for invitee in current:
        if invitee.join_secret is None:
            continue
        join = open_(invitee.join_secret, "invitees", invitee.id)
        if invitee.personal_link:
            personal[invitee.email.lower()] = join
        elif shared is None:
            shared = join
    created = ProvisionedMeeting(
        provider_meeting_id=meeting.provider_meeting_id or "",
        host=host,
        shared=shared,
        personal=personal,
        enforced=frozenset(Control(c) for c in meeting.enforced if c in _CONTROLS),
        reference=dict(meeting.reference),
    )
    return spec, created


def report_scrubber(meeting: Meeting, cipher: FieldCipher) -> Callable[[str], str]:
    """`scrub_text` plus this meeting's join links and passcodes, for one report only.

    Nothing is registered process-wide: the values matter to this snapshot alone, and a
    registry that only grows would redact look-alike text (a numeric passcode) in every
    later log line.
    """
    sealed = [("meetings", meeting.id, meeting.host_join_secret)] + [
        ("invitees", i.id, i.join_secret) for i in meeting.invitees
    ]
    values: list[str] = []
    for table, row_id, secret in sealed:
        if not secret:
            continue
        try:
            join = open_join(cipher, secret, table=table, row_id=row_id)
        except (CipherError, ValueError, KeyError):
            continue
        values += [v for v in (join.url, join.passcode or "") if v]
    return local_scrubber(values)


def _failure(exc: BaseException, scrub: Callable[[str], str] = scrub_text) -> str:
    if isinstance(exc, ProviderNotFound):
        return "the provider no longer has this meeting"
    if isinstance(exc, TimeoutError):
        return "the provider did not answer in time"
    if isinstance(exc, ProviderError):
        return scrub(f"{type(exc).__name__}: {exc.detail}")[:300]
    return f"unexpected {type(exc).__name__}"


async def read_provider(
    provider: MeetingProvider | None,
    meeting: Meeting,
    cipher: FieldCipher,
    *,
    now: datetime,
    scrub: Callable[[str], str] = scrub_text,
) -> ProviderView:
    """Ask the provider for the settings and participants; any failure is recorded, not raised.

    Called with no database transaction open (a provider call can take seconds). Text the
    provider sends back passes through `scrub` (the report's `report_scrubber`).
    """
    base_settings: dict[str, Any] = {
        "read_at": iso(now),
        "policy": meeting.settings,
        "enforced_at_creation": sorted(meeting.enforced),
        "not_enforced": sorted(meeting.not_enforced),
    }
    if provider is None or not meeting.provider_meeting_id:
        reason = (
            "the provider is not configured here any more"
            if provider is None
            else "the meeting was never created at the provider"
        )
        unavailable = {"status": "unavailable", "reason": reason}
        return ProviderView({**base_settings, **unavailable}, dict(unavailable))

    settings: dict[str, Any]
    try:
        spec, created = _spec_and_created(meeting, cipher)
        observed = await asyncio.wait_for(
            provider.verify(spec, created), timeout=PROVIDER_READ_TIMEOUT
        )
        settings = {
            **base_settings,
            "status": "read",
            "confirmed": sorted(str(c) for c in observed.confirmed),
            "mismatched": {
                str(c): scrub(description) for c, description in observed.mismatched.items()
            },
        }
    except (CipherError, ValueError, KeyError) as exc:
        settings = {
            **base_settings,
            "status": "unavailable",
            "reason": f"the stored meeting could not be rebuilt ({type(exc).__name__})",
        }
    except Exception as exc:  # a read failure must never lose the report
        settings = {**base_settings, "status": "unavailable", "reason": _failure(exc, scrub)}

    participants: dict[str, Any]
    if Feature.PARTICIPANTS not in provider.features:
        participants = {
            "status": "unsupported",
            "reason": f"{meeting.provider} offers no participant list to read",
        }
    else:
        try:
            seen = await asyncio.wait_for(
                provider.list_participants(
                    MeetingRef(meeting.provider_meeting_id, dict(meeting.reference))
                ),
                timeout=PROVIDER_READ_TIMEOUT,
            )
            participants = {
                "status": "read",
                "read_at": iso(now),
                "items": compare_attendance(seen, meeting, scrub=scrub),
            }
        except Exception as exc:  # as above: say what failed, keep the report
            participants = {"status": "unavailable", "reason": _failure(exc, scrub)}
    return ProviderView(settings, participants)


def compare_attendance(
    seen: Sequence[Participant], meeting: Meeting, *, scrub: Callable[[str], str] = scrub_text
) -> list[dict[str, Any]]:
    """Each participant, marked invited or not: by email when the provider gives one (a
    strong match), else by display name (weak: anyone can type a name)."""
    emails = {meeting.host_email.lower(): "host"}
    names = {" ".join(meeting.host_name.lower().split()): "host"}
    for invitee in meeting.current_invitees:
        emails.setdefault(invitee.email.lower(), "invitee")
        names.setdefault(" ".join(invitee.name.lower().split()), "invitee")
    items = []
    for person in seen:
        if person.email:
            who = emails.get(person.email.lower())
            match = "email" if who else "none"
        else:
            who = names.get(" ".join(person.name.lower().split()))
            match = "name (weak)" if who else "none"
        items.append(
            {
                "name": scrub(person.name),
                "email": person.email,
                "joined_at": iso(person.joined_at),
                "left_at": iso(person.left_at),
                "provider_participant_id": person.provider_participant_id,
                "invited_as": who,
                "match": match,
                "unknown": who is None,
            }
        )
    return items


def build_timeline(
    records: Records, participants: Mapping[str, Any], *, reported_at: datetime
) -> list[dict[str, Any]]:
    """One ordered list of what happened when, from every source in the snapshot."""
    entries: list[tuple[str, str]] = [
        (str(records.meeting["created_at"]), "meeting requested"),
        (str(records.meeting["starts_at"]), "meeting scheduled to start"),
        (str(records.meeting["ends_at"]), "meeting scheduled to end"),
    ]
    entries += [(str(e["at"]), f"audit: {e['action']} ({e['actor']})") for e in records.audit_trail]
    entries += [
        (str(d["sent_at"]), f"{d['role']} message sent to {d['recipient_email']} by {d['channel']}")
        for d in records.deliveries
        if d["sent_at"]
    ]
    for item in participants.get("items", ()):
        label = item["name"] + ("" if item["invited_as"] else " (not invited)")
        if item["joined_at"]:
            entries.append((str(item["joined_at"]), f"{label} joined"))
        if item["left_at"]:
            entries.append((str(item["left_at"]), f"{label} left"))
    entries.append((reported_at.isoformat(), "incident reported"))
    return [{"at": at, "event": event} for at, event in sorted(entries, key=_instant)]


def _instant(entry: tuple[str, str]) -> tuple[datetime, str]:
    """Sort key; a time without an offset (some providers send naive ones) is taken as UTC,
    since naive and aware times cannot be compared."""
    at = datetime.fromisoformat(entry[0])
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at, entry[1]
