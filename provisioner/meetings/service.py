"""Provisioning: the one place that orchestrates policy, provider, storage, outbox and audit.

`provision_meeting` runs in three short transactions rather than one long one, because a
transaction must never stay open across a provider call (SQLite has one writer; PostgreSQL
has a finite pool):

1. claim the idempotency key and insert the meeting as `provisioning` (+ audit);
2. call the provider and read the meeting back -- no transaction open;
3. store the verified meeting, its invitees, one outbox delivery per recipient, the audit
   events and the idempotency response, all together.

If step 2 or 3 fails, the meeting is marked `failed`, anything created at the provider is
deleted, and the key is released so a retry runs again. A crash between 2 and 3 leaves a
`provisioning` row that `reconcile_stale` settles on the next start.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import structlog
from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.briefing.service import require_acknowledged
from provisioner.crypto import FieldCipher
from provisioner.db import Database, utcnow
from provisioner.delivery.base import Method
from provisioner.delivery.models import Delivery
from provisioner.errors import FieldError
from provisioner.idempotency.errors import IdempotencyKeyLost
from provisioner.idempotency.service import (
    Claimed,
    Replay,
    claim_key,
    complete_key,
    release_key,
)
from provisioner.meetings.codec import settings_to_json
from provisioner.meetings.enforcement import confirmed_enforcement, plan_enforcement
from provisioner.meetings.errors import (
    ControlNotEnforceable,
    InvalidRequest,
    MeetingNotChangeable,
    MeetingNotFound,
    VerificationFailed,
)
from provisioner.meetings.joins import seal_join
from provisioner.meetings.models import Invitee, Meeting, MeetingState
from provisioner.meetings.outbox import queue_new_meeting_deliveries
from provisioner.meetings.read import meeting_read
from provisioner.meetings.schemas import MeetingCreate
from provisioner.observability.metrics import observes_provisioning
from provisioner.policy.document import BriefingAcknowledgementMode, PolicyDocument
from provisioner.policy.errors import PolicyViolation
from provisioner.policy.model import Control
from provisioner.policy.resolve import resolve_policy
from provisioner.prepared import DeferredMismatch, Later, Prepared, with_defaults
from provisioner.providers.base import (
    MeetingProvider,
    MeetingSpec,
    Person,
    ProvisionedMeeting,
)
from provisioner.providers.errors import ProviderError
from provisioner.settings import Settings

log = structlog.get_logger(__name__)

START_SKEW = timedelta(minutes=5)  # a start this far in the past is still "now"


@dataclass(frozen=True)
class Provisioning:
    """The collaborators provisioning needs; built once per app and passed in."""

    db: Database
    policy: PolicyDocument
    cipher: FieldCipher
    settings: Settings
    channels: frozenset[str] = frozenset({"email"})


@dataclass(frozen=True)
class Provisioned:
    """The response to give: a fresh meeting or the replay of the first one."""

    status: int
    body: dict[str, Any]
    meeting_id: str | None
    replayed: bool


def _check_request(
    request: MeetingCreate,
    requester: Principal,
    *,
    max_invitees: int,
    now: datetime,
    channels: frozenset[str],
) -> list[Person]:
    """Checks the schema cannot make: start in the past, duplicates, configured limits."""
    errors: list[FieldError] = []
    if request.start < now - START_SKEW:
        errors.append(FieldError("start", "must not be in the past"))
    if len(request.invitees) > max_invitees:
        errors.append(FieldError("invitees", f"at most {max_invitees} invitees per meeting"))
    seen: dict[str, int] = {}
    invitees: list[Person] = []
    for index, invitee in enumerate(request.invitees):
        if invitee.email in seen:
            errors.append(
                FieldError(
                    f"invitees[{index}].email", f"repeats invitees[{seen[invitee.email]}].email"
                )
            )
            continue
        seen[invitee.email] = index
        if invitee.channel not in channels:
            errors.append(
                FieldError(
                    f"invitees[{index}].channel",
                    f"must be one of the configured channels: {', '.join(sorted(channels))}",
                )
            )
        if invitee.email == requester.email:
            continue  # the host is always invited, with the host's own link
        invitees.append(Person(email=invitee.email, name=invitee.name))
    if not invitees and not errors:
        errors.append(FieldError("invitees", "must name someone other than the host"))
    if errors:
        raise InvalidRequest(
            "; ".join(f"{e.field}: {e.reason}" for e in errors), errors=tuple(errors)
        )
    return invitees


@observes_provisioning
async def provision_meeting(
    deps: Provisioning,
    *,
    request: MeetingCreate,
    requester: Principal,
    provider: MeetingProvider,
    idempotency_key: str | None,
    fingerprint: str,
    idempotency_scope: str | None = None,
    reveal_host_join: bool = True,
    acting_for_host: Principal | None = None,
) -> Provisioned:
    """Create one unique meeting under the requester's effective policy and queue delivery.

    Returns:
        The 201 response body (or the replay of the first response for a repeated key).
        Keys are scoped to `idempotency_scope` (the caller; defaults to the requester, who
        differs from the caller when an integration acts on someone's behalf).
        `reveal_host_join=False` leaves the host's link and passcode out of the response and
        its stored replay: a calendar integration is neither host nor invitee.
        `acting_for_host` is the integration that asked on the host's behalf; it is audited
        in the same transaction as the meeting row, so the record cannot go missing.

    Raises:
        InvalidRequest: the request breaks a rule the schema could not check.
        PolicyViolation: it loosens a locked setting (nothing is created).
        ControlNotEnforceable: the provider cannot enforce a control the policy requires.
        IdempotencyKeyReused / IdempotencyKeyInFlight: see `idempotency.service`.
        IdempotencyKeyLost: the key's record vanished mid-request (nothing is stored).
        ProviderError: the provider failed; the meeting is marked failed, nothing leaks.
        VerificationFailed: the read-back contradicted the policy; the meeting was deleted.
    """
    now = utcnow()
    invitees = _check_request(
        request,
        requester,
        max_invitees=deps.settings.api.max_invitees,
        now=now,
        channels=deps.channels,
    )
    duration = timedelta(minutes=request.duration_minutes)
    try:
        policy = resolve_policy(
            deps.policy,
            groups=requester.groups,
            request=request.settings,
            duration_minutes=request.duration_minutes,
            invitee_emails=[invitee.email for invitee in request.invitees],
        )
        plan = plan_enforcement(policy, provider.capabilities)
        if plan.unenforceable_required:
            names = sorted(plan.unenforceable_required)
            raise ControlNotEnforceable(
                f"{provider.name} cannot enforce {', '.join(names)}, which the policy "
                "requires; choose another provider",
                errors=tuple(FieldError("provider", f"cannot enforce {name}") for name in names),
            )
    except (PolicyViolation, ControlNotEnforceable) as refusal:
        await _record_refusal(deps.db, requester, refusal, provider=provider.name)
        raise

    if deps.policy.briefing_acknowledgement is BriefingAcknowledgementMode.REQUIRED:
        # Before anything is created: a host who has not read the provider's briefing is
        # told where to read it, and nothing else happens. (No query when the policy is off.)
        async with deps.db.session() as session:
            await require_acknowledged(
                session,
                policy=deps.policy,
                host=requester,
                provider=provider.name,
                base_url=deps.settings.api.public_url,
            )
    meeting_id = str(uuid.uuid4())
    spec = MeetingSpec(
        meeting_id=meeting_id,
        topic=request.topic,
        start=request.start,
        duration=duration,
        timezone=request.timezone,
        host=Person(email=requester.email, name=requester.name),
        invitees=tuple(invitees),
        settings=policy.settings,
    )

    # Every column, as stored: step 3 builds the response from it instead of reading the
    # row back (times in UTC, as the column returns them).
    provisioning_row = with_defaults(
        _MEETINGS,
        {
            "id": meeting_id,
            "host_subject": requester.subject,
            "host_email": requester.email,
            "host_name": requester.name,
            "topic": request.topic,
            "provider": provider.name,
            "state": MeetingState.PROVISIONING,
            "starts_at": spec.start.astimezone(UTC),
            "ends_at": spec.end.astimezone(UTC),  # real time, also across a DST change
            "timezone": request.timezone,
            "settings": settings_to_json(policy.settings),
            "ics_uid": f"{meeting_id}@provisioner",
            "created_at": now,
            "updated_at": now,
        },
    )

    async def insert_provisioning(session: AsyncSession) -> None:
        # Nothing reads or refers to this row before the commit: it goes with it.
        _INSERT_MEETING.defer(session, [provisioning_row])
        await record_event(
            session,
            actor=requester.subject,
            action="meeting.requested",
            target_type="meeting",
            target_id=meeting_id,
            details={
                "provider": provider.name,
                "invitees": len(invitees),
                # "control=origin" strings: a dict keyed by
                # control would trip the redactor on "passcode"
                "policy_sources": sorted(
                    f"{control}={origin}" for control, origin in policy.sources.items()
                ),
                "idempotency": idempotency_key is not None,
            },
        )
        if acting_for_host is not None:
            await record_event(
                session,
                actor=acting_for_host.subject,
                action="meeting.requested_on_behalf",
                target_type="meeting",
                target_id=meeting_id,
                details={"client_id": acting_for_host.client_id, "host": requester.subject},
            )

    claim: Claimed | None = None
    if idempotency_key is not None:
        outcome = await claim_key(
            deps.db,
            scope=idempotency_scope or requester.subject,
            key=idempotency_key,
            fingerprint=fingerprint,
            meeting_id=meeting_id,
            cipher=deps.cipher,
            settings=deps.settings.idempotency,
            then=insert_provisioning,  # one transaction: the claim and the meeting row
        )
        if isinstance(outcome, Replay):
            log.info("meeting.replayed", meeting_id=outcome.meeting_id)
            return Provisioned(
                status=outcome.status,
                body=outcome.body,
                meeting_id=outcome.meeting_id,
                replayed=True,
            )
        claim = outcome
    else:
        async with deps.db.session() as session:
            await insert_provisioning(session)

    created: ProvisionedMeeting | None = None
    try:
        created = await provider.create(spec, idempotency_key=idempotency_key or meeting_id)
        observed = await provider.verify(spec, created)
        enforced, not_enforced = confirmed_enforcement(
            plan.wanted, created, observed, meeting_id=meeting_id, must_enforce=policy.must_enforce
        )
        body = await store_verified(
            deps,
            spec=spec,
            channel_of={invitee.email: invitee.channel for invitee in request.invitees},
            reveal_host_join=reveal_host_join,
            created=created,
            enforced=enforced,
            not_enforced=not_enforced,
            requester=requester,
            claim=claim,
            provisioning_row=provisioning_row,
        )
    except BaseException as failure:
        await fail_provisioning(
            deps,
            meeting_id=meeting_id,
            requester=requester,
            provider=provider,
            created=created,
            claim=claim,
            failure=failure,
        )
        raise
    log.info(
        "meeting.provisioned",
        meeting_id=meeting_id,
        provider=provider.name,
        invitees=len(invitees),
        not_enforced=[str(control) for control in sorted(not_enforced)],
    )
    return Provisioned(status=201, body=body, meeting_id=meeting_id, replayed=False)


async def store_verified(
    deps: Provisioning,
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
# Every create runs these (provisioner/prepared.py says why they are prepared).
_INSERT_MEETING = Prepared(insert(_MEETINGS))
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
    deps: Provisioning,
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


async def _record_refusal(
    db: Database,
    requester: Principal,
    refusal: PolicyViolation | ControlNotEnforceable,
    *,
    provider: str,
) -> None:
    """IT wants to see refused requests too: who tried to loosen what, never the values."""
    fields = [e.field for e in refusal.errors]
    async with db.session() as session:
        await record_event(
            session,
            actor=requester.subject,
            action="meeting.refused",
            target_type="principal",
            target_id=requester.subject[:64],
            details={"reason": refusal.code, "fields": fields, "provider": provider},
        )
    log.info("meeting.refused", reason=refusal.code, fields=fields)


def host_subjects(host: Principal) -> tuple[str, ...]:
    """The `host_subject` values that are this host's.

    A meeting an integration created on someone's behalf is stored under
    `email:<address>` (the integration knows the employee's email, not their `sub`), so
    the employee finds it once they sign in with that verified email.
    """
    if host.is_integration or not host.email or not host.email_verified:
        return (host.subject,)
    return (host.subject, f"email:{host.email}")


async def get_meeting_for_host(
    session: AsyncSession, *, meeting_id: str, host: Principal
) -> Meeting:
    """The meeting if `host` owns it; someone else's meeting is simply not found (no leak)."""
    meeting = await session.scalar(
        select(Meeting)
        .options(selectinload(Meeting.invitees))
        .where(Meeting.id == meeting_id, Meeting.host_subject.in_(host_subjects(host)))
    )
    if meeting is None:
        raise MeetingNotFound(meeting_id)
    return meeting


async def delivery_status_by_invitee(
    session: AsyncSession, meeting_id: str
) -> dict[str | None, str]:
    rows = await session.execute(
        select(Delivery.invitee_id, Delivery.status).where(Delivery.meeting_id == meeting_id)
    )
    return {invitee_id: status for invitee_id, status in rows}


async def list_meetings_for_host(
    session: AsyncSession,
    *,
    host: Principal,
    limit: int,
    after: tuple[datetime, str] | None,
) -> tuple[Sequence[tuple[Meeting, int]], tuple[datetime, str] | None]:
    """Newest first, keyset-paginated on (created_at, id) so deep pages stay fast."""
    invitee_count = (
        select(func.count(Invitee.id))
        .where(Invitee.meeting_id == Meeting.id, Invitee.removed_at.is_(None))
        .correlate(Meeting)
        .scalar_subquery()
    )
    statement = (
        select(Meeting, invitee_count)
        .where(Meeting.host_subject.in_(host_subjects(host)))
        .order_by(Meeting.created_at.desc(), Meeting.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        created_at, last_id = after
        statement = statement.where(
            or_(
                Meeting.created_at < created_at,
                and_(Meeting.created_at == created_at, Meeting.id < last_id),
            )
        )
    rows = [(meeting, int(count)) for meeting, count in (await session.execute(statement))]
    next_after = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1][0]
        next_after = (last.created_at, last.id)
    return rows, next_after
