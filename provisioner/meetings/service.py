"""Provisioning: the one place that orchestrates policy, provider, storage, outbox and audit.

`provision_meeting` runs in three short transactions rather than one long one, because a
transaction must never stay open across a provider call (SQLite has one writer; PostgreSQL
has a finite pool):

1. claim the idempotency key and insert the meeting as `provisioning` (+ audit);
2. call the provider and read the meeting back -- no transaction open;
3. store the verified meeting, its invitees, one outbox delivery per recipient, the audit
   events and the idempotency response, all together.

If step 2 or 3 fails, the meeting is marked `failed`, anything created at the provider is
deleted, and the key is released so a retry runs again (step 3 and that undoing are
`store.py`). A crash between 2 and 3 leaves a `provisioning` row that `reconcile_stale`
settles on the next start. The host's reads are `repository.py`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.briefing.service import require_acknowledged
from provisioner.crypto import FieldCipher
from provisioner.db import Database, utcnow
from provisioner.errors import FieldError, ProvisionerError
from provisioner.idempotency.service import (
    Claimed,
    Replay,
    claim_key,
    find_replay,
)
from provisioner.meetings.codec import settings_to_json
from provisioner.meetings.enforcement import (
    EnforcementPlan,
    confirmed_enforcement,
    plan_enforcement,
)
from provisioner.meetings.errors import (
    ControlNotEnforceable,
    InvalidRequest,
)
from provisioner.meetings.models import Meeting, MeetingState
from provisioner.meetings.schemas import MeetingCreate
from provisioner.meetings.store import fail_provisioning, store_verified
from provisioner.observability.metrics import observes_provisioning
from provisioner.policy.document import BriefingAcknowledgementMode, PolicyDocument
from provisioner.policy.errors import PolicyViolation
from provisioner.policy.model import EffectivePolicy
from provisioner.policy.resolve import resolve_policy
from provisioner.prepared import Prepared, with_defaults
from provisioner.providers.base import (
    MeetingProvider,
    MeetingSpec,
    Person,
    ProvisionedMeeting,
)
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


async def _admit(
    deps: Provisioning,
    *,
    request: MeetingCreate,
    requester: Principal,
    provider: MeetingProvider,
    now: datetime,
) -> tuple[list[Person], EffectivePolicy, EnforcementPlan]:
    """Every check before anything is written: the request, the policy, the briefing.

    Returns the invitees (without the host), the effective policy and its plan.
    """
    invitees = _check_request(
        request,
        requester,
        max_invitees=deps.settings.api.max_invitees,
        now=now,
        channels=deps.channels,
    )
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
    return invitees, policy, plan


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
        The 201 response body (or the replay of the first response for a repeated key,
        also when the repeat itself would now be refused: its start has passed since).
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
    try:
        invitees, policy, plan = await _admit(
            deps, request=request, requester=requester, provider=provider, now=now
        )
    except ProvisionerError as refusal:
        # A retry of a request that was created must get its answer, even when it would
        # be refused today: its start has passed, the policy or the briefing changed.
        replay = (
            await find_replay(
                deps.db,
                scope=idempotency_scope or requester.subject,
                key=idempotency_key,
                fingerprint=fingerprint,
                cipher=deps.cipher,
            )
            if idempotency_key is not None
            else None
        )
        if replay is not None:
            log.info("meeting.replayed", meeting_id=replay.meeting_id)
            return Provisioned(
                status=replay.status, body=replay.body, meeting_id=replay.meeting_id, replayed=True
            )
        if isinstance(refusal, PolicyViolation | ControlNotEnforceable):
            await _record_refusal(deps.db, requester, refusal, provider=provider.name)
        raise
    duration = timedelta(minutes=request.duration_minutes)
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
            "requested_by": acting_for_host.subject if acting_for_host is not None else None,
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


_MEETINGS: Table = Meeting.__table__  # type: ignore[assignment]
# Every create runs it (provisioner/prepared.py says why it is prepared).
_INSERT_MEETING = Prepared(insert(_MEETINGS))
