"""The four things that must hold after any fault (issue #9), checked in one place.

1. No duplicate provider meetings: no request has two live Zoom meetings (each carries
   our meeting id as its marker), no invitee is registered twice, and each active meeting
   row has its own Zoom meeting, alive.
2. No lost deliveries: the host and every invitee of every active meeting has a delivery
   that either arrived at the SMTP relay (by the delivery id every message carries) or is
   still due for another attempt; a permanent refusal is allowed only where the test
   caused one, and then the dead letter is visible (an alert is queued). Every message
   the relay received belongs to a delivery of an active meeting.
3. No orphan provider meetings after reconciliation: `reconcile_stale` runs, then every
   meeting alive at Zoom belongs to exactly one active row.
4. No secret in the logs: none of the passcodes, links and tokens Zoom ever issued, the
   links stored (encrypted) in the rows, the configured secrets or the callers' bearer
   tokens appears in the captured log text.

`check_invariants` asserts all four and returns what it found, so a test can also pin the
numbers its own fault should produce.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, SecretStr
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from provisioner.crypto import FieldCipher
from provisioner.db import Database
from provisioner.delivery.base import Role
from provisioner.delivery.models import Delivery, DeliveryStatus
from provisioner.delivery.transports import DELIVERY_ID_HEADER
from provisioner.idempotency.models import IdempotencyKey, KeyState
from provisioner.meetings.joins import open_join
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.meetings.reconcile import reconcile_stale
from provisioner.providers.base import JoinDetails, MeetingProvider
from provisioner.providers.zoom.mapping import marker
from provisioner.redaction import is_secret_key
from provisioner.settings import IdempotencySettings, Settings
from tests.faults.harness import FaultyZoom
from tests.support.meeting_fixtures import parse_email
from tests.support.smtp import RecordingHandler

ACTIVE = frozenset({MeetingState.VERIFIED, MeetingState.DELIVERING, MeetingState.DELIVERED})
WAITING = frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENDING})
RECIPIENT_ROLES = frozenset({Role.HOST, Role.INVITEE})
# The check runs once every request has finished, so any meeting still `provisioning`
# was interrupted: reconciliation may settle it at once instead of after five minutes.
SETTLE_NOW = IdempotencySettings(stale_after_seconds=0.001)
# Shorter values would match by accident (Zoom passcodes are 10 characters).
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True)
class FaultWorld:
    """The real parts one fault test runs against."""

    db: Database
    cipher: FieldCipher
    providers: Mapping[str, MeetingProvider]
    zoom: FaultyZoom
    relay: RecordingHandler
    settings: Settings
    bearer_tokens: Sequence[str] = ()


@dataclass(frozen=True)
class Findings:
    """What the check saw, for assertions about one fault's own outcome."""

    active: tuple[str, ...]  # ids of the active meetings
    reconciled: int  # meetings reconciliation settled during the check
    sent: int  # host and invitee deliveries that reached the relay
    waiting: int  # host and invitee deliveries still due for another attempt
    refused: int  # dead-lettered after a permanent refusal the test caused
    resent: int  # extra copies the relay received (at-least-once delivery)


async def check_invariants(
    world: FaultWorld,
    *,
    logs: str,
    meetings: int,
    refused: Collection[str] = (),
    log_events: Collection[str] = (),
) -> Findings:
    """Assert the four invariants; `meetings` is how many active meetings the test made,
    `refused` the recipients whose mailbox the test made refuse permanently, and
    `log_events` events that must be in `logs` (proof that the capture saw the fault)."""
    await _assert_no_duplicates(world, meetings)
    reconciled = await reconcile_stale(world.db, settings=SETTLE_NOW, providers=world.providers)
    active = await _assert_no_orphans(world, meetings)
    sent, waiting, dead, resent = await _assert_no_lost_deliveries(world, active, refused)
    await _assert_no_secret_in(logs, world, log_events)
    return Findings(
        active=tuple(sorted(m.id for m in active)),
        reconciled=reconciled,
        sent=sent,
        waiting=waiting,
        refused=dead,
        resent=resent,
    )


async def _meetings(db: Database) -> list[Meeting]:
    async with db.session() as session:
        found = await session.scalars(select(Meeting).options(selectinload(Meeting.invitees)))
        return list(found.all())


def _active(rows: Sequence[Meeting]) -> list[Meeting]:
    return [row for row in rows if row.state in ACTIVE]


async def _assert_no_duplicates(world: FaultWorld, meetings: int) -> None:
    live = world.zoom.meetings
    markers = collections.Counter(str(m.get("agenda")) for m in live.values())
    assert [m for m, n in markers.items() if n > 1] == [], "one request, several Zoom meetings"
    for meeting_id, registrants in world.zoom.registrants.items():
        emails = collections.Counter(str(r["email"]).lower() for r in registrants)
        twice = sorted(e for e, n in emails.items() if n > 1)
        assert twice == [], f"Zoom meeting {meeting_id} registered {twice} twice"
    rows = await _meetings(world.db)
    active = _active(rows)
    states = sorted(row.state for row in rows)
    assert len(active) == meetings, f"expected {meetings} active meeting(s), rows: {states}"
    provider_ids = collections.Counter(row.provider_meeting_id for row in active)
    assert None not in provider_ids, "an active meeting has no Zoom meeting id"
    shared = sorted(str(i) for i, n in provider_ids.items() if n > 1)
    assert shared == [], f"active meetings share the Zoom meetings {shared}"
    for row in active:
        stored = live.get(int(str(row.provider_meeting_id)))
        assert stored is not None, f"meeting {row.id} is active but its Zoom meeting is gone"
        assert stored["agenda"] == marker(row.id), f"meeting {row.id} points at another's"
    async with world.db.session() as session:
        keyed = (
            await session.scalars(
                select(IdempotencyKey.meeting_id).where(IdempotencyKey.state == KeyState.COMPLETED)
            )
        ).all()
    assert set(keyed) <= {row.id for row in active}, "a completed key names no live meeting"


async def _assert_no_orphans(world: FaultWorld, meetings: int) -> list[Meeting]:
    rows = await _meetings(world.db)
    left = [row.id for row in rows if row.state == MeetingState.PROVISIONING]
    assert left == [], f"reconciliation left {left} provisioning"
    active = _active(rows)
    assert len(active) == meetings, "reconciliation changed an active meeting"
    owned = {str(row.provider_meeting_id) for row in active}
    orphans = sorted(str(m) for m in world.zoom.meetings if str(m) not in owned)
    assert orphans == [], f"Zoom meetings nobody owns after reconciliation: {orphans}"
    return active


def _received(relay: RecordingHandler) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(delivery id, envelope recipients) of each message the relay accepted."""
    for raw in relay.messages:
        delivery_id = parse_email(raw.content)[DELIVERY_ID_HEADER]
        assert delivery_id, "a message without a delivery id reached the relay"
        yield str(delivery_id), tuple(r.lower() for r in raw.rcpt_tos)


async def _assert_no_lost_deliveries(
    world: FaultWorld, active: Sequence[Meeting], refused: Collection[str]
) -> tuple[int, int, int, int]:
    refused = {email.lower() for email in refused}
    async with world.db.session() as session:
        deliveries = list((await session.scalars(select(Delivery))).all())
    by_id = {d.id: d for d in deliveries}
    arrived = collections.Counter[str]()
    for delivery_id, recipients in _received(world.relay):
        delivery = by_id.get(delivery_id)
        assert delivery is not None, "the relay received a message no delivery row explains"
        assert delivery.recipient_email.lower() in recipients, "a message went to someone else"
        arrived[delivery_id] += 1
    active_ids = {m.id for m in active}
    stray = [d.id for d in deliveries if d.id in arrived and d.meeting_id not in active_ids]
    assert stray == [], "an invitation for a meeting that does not exist went out"
    sent = waiting = dead = 0
    lost: list[str] = []
    for meeting in active:
        expected = {meeting.host_email.lower()} | {
            i.email.lower() for i in meeting.invitees if i.removed_at is None
        }
        mine = [
            d
            for d in deliveries
            if d.meeting_id == meeting.id
            and d.role in RECIPIENT_ROLES
            and d.sequence == meeting.sequence
        ]
        for recipient in sorted(expected):
            theirs = [d for d in mine if d.recipient_email.lower() == recipient]
            if any(d.status == DeliveryStatus.SENT and d.id in arrived for d in theirs):
                sent += 1
            elif any(d.status in WAITING for d in theirs):
                waiting += 1
            elif recipient in refused and any(d.status == DeliveryStatus.DEAD for d in theirs):
                alerts = [d for d in deliveries if d.meeting_id == meeting.id and d.role == "alert"]
                assert alerts, f"{recipient}'s refusal was dead-lettered without an alert"
                dead += 1
            else:
                lost.append(f"{recipient} ({[d.status for d in theirs]})")
    assert lost == [], f"deliveries lost: {lost}"
    resent = sum(n - 1 for n in arrived.values())
    return sent, waiting, dead, resent


def _with_parts(value: str) -> Iterator[str]:
    """A secret, and each query value of it when it is a link (`pwd=`, `tk=`): the log
    redactor strips those from a link, so a leaked link must be looked for by its token."""
    yield value
    if value.startswith(("http://", "https://")):
        yield from (v for _, v in parse_qsl(urlsplit(value).query))


def _config_secrets(node: Any, key: str = "") -> Iterator[str]:
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _config_secrets(getattr(node, name), name)
    elif isinstance(node, Mapping):
        for name, value in node.items():
            yield from _config_secrets(value, str(name))
    elif isinstance(node, str) and is_secret_key(key):
        yield node


async def _stored_joins(world: FaultWorld) -> list[JoinDetails]:
    joins: list[JoinDetails] = []
    for meeting in await _meetings(world.db):
        if meeting.host_join_secret:
            joins.append(
                open_join(
                    world.cipher, meeting.host_join_secret, table="meetings", row_id=meeting.id
                )
            )
        joins.extend(
            open_join(world.cipher, i.join_secret, table="invitees", row_id=i.id)
            for i in meeting.invitees
            if i.join_secret
        )
    return joins


async def _assert_no_secret_in(logs: str, world: FaultWorld, log_events: Collection[str]) -> None:
    assert logs.strip(), "no log line was captured: the check would prove nothing"
    missing = [event for event in log_events if event not in logs]
    assert missing == [], f"the captured logs lack {missing}"
    known: list[tuple[str, str]] = []  # (kind, value)
    for value in world.zoom.issued:
        known += [("issued by Zoom", part) for part in _with_parts(value)]
    for join in await _stored_joins(world):
        known += [("stored join link", part) for part in _with_parts(join.url)]
        if join.passcode:
            known.append(("stored passcode", join.passcode))
    known += [("configured secret", value) for value in _config_secrets(world.settings)]
    known.append(("Zoom app secret", world.zoom.client_secret))
    key_file: Path = world.settings.security.data_key_file
    if key_file.is_file():
        known.append(("data key", key_file.read_text().strip()))
    known += [("caller's bearer token", token) for token in world.bearer_tokens]
    assert any(kind == "issued by Zoom" for kind, _ in known), "no Zoom secret to look for"
    # Name what leaked, never the value: a failing test must not print the secret either.
    leaked = sorted(
        {kind for kind, value in known if len(value) >= MIN_SECRET_LENGTH and value in logs}
    )
    assert leaked == [], f"secrets in the logs: {leaked}"
