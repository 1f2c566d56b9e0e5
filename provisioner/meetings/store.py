"""Step 3 of provisioning, and its undoing: what the provider's answer does to our rows.

`store_verified` writes the verified meeting, its invitees, one outbox delivery per
recipient, the audit events and the idempotency answer in one transaction, conditional on
the row still being `provisioning`. `fail_provisioning` deletes what the provider made,
marks the meeting failed and frees the key, so a retry runs again. Creation
(`service.provision_meeting`) and link rotation (`rotate.py`) share both.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, Protocol

import structlog
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.crypto import FieldCipher
from provisioner.db import Database, utcnow
from provisioner.delivery.base import Method
from provisioner.idempotency.errors import IdempotencyKeyLost
from provisioner.idempotency.service import Claimed, complete_key, release_key
from provisioner.meetings.errors import MeetingNotChangeable, MeetingNotFound, VerificationFailed
from provisioner.meetings.joins import seal_join
from provisioner.meetings.models import Invitee, Meeting, MeetingState
from provisioner.meetings.outbox import queue_new_meeting_deliveries
from provisioner.meetings.read import meeting_read
from provisioner.policy.model import Control
from provisioner.prepared import DeferredMismatch, Later, Prepared
from provisioner.providers.base import MeetingProvider, MeetingSpec, ProvisionedMeeting
from provisioner.providers.errors import ProviderError

log = structlog.get_logger(__name__)


class Stores(Protocol):
    """What storing needs of `service.Provisioning`: the database and the field cipher."""

    @property
    def db(self) -> Database: ...

    @property
    def cipher(self) -> FieldCipher: ...


async def store_verified(
    deps: Stores,
    *,
    spec: MeetingSpec,
    channel_of: Mapping[str, str],
    created: ProvisionedMeeting,
    enforced: frozenset[Control],
    not_enforced: frozenset[Control],
    requester: Principal,
    claim: Claimed | None,
    reveal_host_join: bool,
    provisioning_row: Mapping[str, Any] | None = None,
    also: Callable[[AsyncSession, Meeting], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Store the verified meeting, its invitees, deliveries and audit in one transaction.

    `provisioning_row` is the meeting's row as step 1 stored it (every column). Or, with
    `also` instead, the row is locked and loaded, and `also` runs first inside the
    transaction: a link rotation retires the meeting it replaces there, so the new meeting
    is never stored without the old one marked.

    Raises:
        MeetingNotChangeable: the row left `provisioning` meanwhile; nothing was stored.
        MeetingNotFound: the row is gone.
        IdempotencyKeyLost: `claim`'s row is gone; nothing was stored.
    """
    cipher = deps.cipher
    marked: Later | None = None
    completed: Later | None = None
    try:
        async with deps.db.session() as session:
            if also is not None:
                locked = await session.get(Meeting, spec.meeting_id, with_for_update=True)
                if locked is None:
                    raise MeetingNotFound(spec.meeting_id)
                if locked.state != MeetingState.PROVISIONING:
                    raise MeetingNotChangeable(locked.id, state=locked.state)
                await also(session, locked)
                await session.flush()  # what `also` changed, before the deferred statements
                provisioning_row = {c.key: getattr(locked, c.key) for c in _MEETINGS.columns}
            if provisioning_row is None:
                raise TypeError("store_verified needs the provisioning row, or `also`")
            verified = {
                "provider_meeting_id": created.provider_meeting_id,
                "reference": dict(created.reference),
                "enforced": sorted(enforced),
                "not_enforced": sorted(not_enforced),
                "host_join_secret": seal_join(
                    cipher, created.host, table="meetings", row_id=spec.meeting_id
                ),
                "state": MeetingState.VERIFIED,
                "updated_at": utcnow(),
            }
            # Conditional on the state and written at the commit with the rest (on
            # PostgreSQL in the same statement, prepared.py), so nothing is read back: the
            # response is the row step 1 stored plus these changes, which is what a
            # read-back returns. No row changed fails the commit (`DeferredMismatch`).
            marked = _MARK_VERIFIED.defer_statement(
                session,
                {"meeting_id": spec.meeting_id, "provisioning": MeetingState.PROVISIONING}
                | {f"new_{key}": value for key, value in verified.items()},
                expect=1,
            )
            # A detached copy for the response (never added to the session).
            meeting = Meeting(**(dict(provisioning_row) | verified))
            invitee_rows: list[dict[str, Any]] = []
            for position, person in enumerate(spec.invitees):
                invitee_id = str(uuid.uuid4())
                join = created.join_for(person.email)
                invitee_rows.append(
                    {
                        "id": invitee_id,
                        "meeting_id": meeting.id,
                        "position": position,
                        "email": person.email,
                        "name": person.name,
                        "personal_link": person.email.lower() in created.personal,
                        "channel": channel_of.get(person.email, "email"),
                        "removed_at": None,
                        "join_secret": seal_join(cipher, join, table="invitees", row_id=invitee_id),
                    }
                )
            # Written at the commit, with the deliveries that refer to them (prepared.py).
            _INSERT_INVITEE.defer(session, invitee_rows)
            invitees = [Invitee(**row) for row in invitee_rows]
            delivery_status = queue_new_meeting_deliveries(
                session,
                meeting_id=meeting.id,
                host_email=meeting.host_email,
                host_name=meeting.host_name,
                sequence=meeting.sequence,
                invitees=invitees,
                method=Method.REQUEST,
            )
            await record_event(
                session,
                actor=requester.subject,
                action="meeting.created",
                target_type="meeting",
                target_id=meeting.id,
                details={
                    "provider": meeting.provider,
                    "provider_meeting_id": created.provider_meeting_id,
                },
            )
            await record_event(
                session,
                actor="system",
                action="meeting.verified",
                target_type="meeting",
                target_id=meeting.id,
                details={"enforced": sorted(enforced), "not_enforced": sorted(not_enforced)},
            )
            await record_event(
                session,
                actor="system",
                action="delivery.queued",
                target_type="meeting",
                target_id=meeting.id,
                details={"deliveries": len(delivery_status), "channel": "email"},
            )
            # The meeting is new: its invitees are exactly the rows just written.
            set_committed_value(meeting, "invitees", invitees)
            body = meeting_read(
                meeting,
                cipher=cipher,
                include_host_join=reveal_host_join,
                delivery_status=delivery_status,
            )
            if claim is not None:
                completed = complete_key(session, claim, status=201, body=body, cipher=cipher)
    except DeferredMismatch as mismatch:
        if claim is not None and mismatch.later is completed:
            # The claim's row was deleted while the provider worked (by hand, or a purge):
            # with nowhere to keep the answer, nothing is stored and the caller retries.
            raise IdempotencyKeyLost(
                f"the Idempotency-Key's record (key {claim.key_id}) vanished while meeting "
                f"{spec.meeting_id} was being created; nothing was stored, retry the request",
                key_id=claim.key_id,
            ) from None
        if mismatch.later is not marked:
            raise
        await _not_stored(deps.db, spec.meeting_id)
    return body


async def _not_stored(db: Database, meeting_id: str) -> NoReturn:
    """Why the conditional UPDATE changed no row (its transaction rolled back)."""
    async with db.session() as session:
        state = await session.scalar(select(Meeting.state).where(Meeting.id == meeting_id))
    if state is None:
        raise MeetingNotFound(meeting_id)
    # Reconciliation gave up on this attempt (and freed its key) while we were at the
    # provider: storing it now could leave two live meetings for one request.
    raise MeetingNotChangeable(meeting_id, state=state)


_MEETINGS: Table = Meeting.__table__  # type: ignore[assignment]
# Every create and rotation runs these (provisioner/prepared.py says why they are prepared).
_INSERT_INVITEE = Prepared(insert(Invitee.__table__))  # type: ignore[arg-type]
_MARK_VERIFIED = Prepared(
    update(_MEETINGS)
    .where(
        _MEETINGS.c.id == bindparam("meeting_id"),
        _MEETINGS.c.state == bindparam("provisioning"),
    )
    .values(
        provider_meeting_id=bindparam("new_provider_meeting_id"),
        reference=bindparam("new_reference", type_=_MEETINGS.c.reference.type),
        enforced=bindparam("new_enforced", type_=_MEETINGS.c.enforced.type),
        not_enforced=bindparam("new_not_enforced", type_=_MEETINGS.c.not_enforced.type),
        host_join_secret=bindparam("new_host_join_secret"),
        state=bindparam("new_state"),
        updated_at=bindparam("new_updated_at", type_=_MEETINGS.c.updated_at.type),
    )
)


async def fail_provisioning(
    deps: Stores,
    *,
    meeting_id: str,
    requester: Principal,
    provider: MeetingProvider,
    created: ProvisionedMeeting | None,
    claim: Claimed | None,
    failure: BaseException,
) -> None:
    """Undo what can be undone and record why, without letting a second error hide the first."""
    deleted = False
    if created is not None:
        try:
            await provider.delete(created.ref)
            deleted = True
        except ProviderError as exc:
            log.warning(
                "meeting.cleanup_failed", meeting_id=meeting_id, error_type=type(exc).__name__
            )
    reason = (
        failure.code
        if isinstance(failure, ProviderError | VerificationFailed)
        else type(failure).__name__
    )
    async with deps.db.session() as session:
        meeting = await session.get(Meeting, meeting_id)
        if meeting is not None:
            meeting.state = MeetingState.FAILED
            meeting.failure = reason
            # Not deleted by us: a meeting may exist at the provider (a create that failed
            # at a later step can leave one its own clean-up could not remove).
            meeting.orphan_check_pending = not deleted
        await record_event(
            session,
            actor="system",
            action="meeting.failed",
            target_type="meeting",
            target_id=meeting_id,
            details={
                "reason": reason,
                "provider": provider.name,
                "provider_meeting_deleted": deleted,
                "orphan_check_pending": not deleted,
            },
        )
        if claim is not None:
            await release_key(session, claim)
    log.warning(
        "meeting.provision_failed", meeting_id=meeting_id, provider=provider.name, reason=reason
    )
