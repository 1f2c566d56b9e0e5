"""After creation: reschedule, cancel and end a meeting, telling everyone privately.

Each operation follows the provisioning pattern: read what we need in a short transaction,
call the provider with no transaction open, then write the new state, the audit event and
one outbox delivery per person (REQUEST with a higher SEQUENCE for a reschedule, CANCEL for
a cancellation) together. A provider without the feature is never called; the caller gets
`ProviderUnsupported` saying so plainly.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.db import utcnow
from provisioner.delivery.base import Method
from provisioner.errors import FieldError
from provisioner.meetings.access import acting_as, get_meeting_for_actor, is_host
from provisioner.meetings.codec import settings_from_json
from provisioner.meetings.enforcement import confirmed_enforcement, restrictive_controls
from provisioner.meetings.errors import (
    ControlNotEnforceable,
    InvalidRequest,
    MeetingNotChangeable,
    VerificationFailed,
)
from provisioner.meetings.joins import seal_join
from provisioner.meetings.manual_steps import unsupported
from provisioner.meetings.models import Invitee, Meeting, MeetingState
from provisioner.meetings.outbox import queue_deliveries
from provisioner.meetings.read import meeting_read
from provisioner.meetings.repository import delivery_status_by_invitee, get_meeting_for_host
from provisioner.meetings.schemas import MeetingUpdate
from provisioner.meetings.service import START_SKEW, Provisioning
from provisioner.policy.model import MeetingSettings
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import (
    Feature,
    MeetingProvider,
    MeetingRef,
    MeetingSpec,
    Person,
    RevokesPersonalLinks,
)
from provisioner.providers.errors import ProviderNotFound, ProviderUnsupported

log = structlog.get_logger(__name__)

CHANGEABLE = frozenset({MeetingState.VERIFIED, MeetingState.DELIVERING, MeetingState.DELIVERED})


def _require(provider: MeetingProvider, feature: Feature) -> None:
    if feature not in provider.features:
        raise ProviderUnsupported(
            f"{provider.name} has no API to {feature.replace('_', ' ')}",
            provider=provider.name,
            feature=feature,
        )


def _ref(meeting: Meeting) -> MeetingRef:
    if meeting.provider_meeting_id is None:
        raise MeetingNotChangeable(meeting.id, state=meeting.state)
    return MeetingRef(meeting.provider_meeting_id, dict(meeting.reference))


def _check_changeable(meeting: Meeting) -> None:
    if meeting.state not in CHANGEABLE:
        raise MeetingNotChangeable(meeting.id, state=meeting.state)


async def _body(deps: Provisioning, meeting_id: str, host: Principal) -> dict[str, Any]:
    async with deps.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=host)
        status = await delivery_status_by_invitee(session, meeting.id)
        return meeting_read(
            meeting,
            cipher=deps.cipher,
            include_host_join=is_host(meeting, host),  # never an integration's
            delivery_status=status,
        )


async def reschedule_meeting(
    deps: Provisioning,
    *,
    meeting_id: str,
    host: Principal,
    change: MeetingUpdate,
    provider: MeetingProvider,
) -> dict[str, Any]:
    """Move or rename the same meeting and re-invite everyone with a higher SEQUENCE.

    Raises:
        MeetingNotFound: not the caller's meeting.
        MeetingNotChangeable: cancelled, ended or failed meetings stay as they are.
        InvalidRequest: the new times are in the past or exceed the meeting's maximum.
        ProviderUnsupported: the provider cannot reschedule.
        ProviderError / VerificationFailed: the provider failed or did not apply it.
    """
    _require(provider, Feature.RESCHEDULE)
    now = utcnow()
    async with deps.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=host)
        _check_changeable(meeting)
        if meeting.ends_at <= now:
            # Over by the clock (nothing marks a meeting ended unless someone ends it): a
            # change would send its link out again, to the late invitees too.
            raise MeetingNotChangeable(
                meeting.id, state=f"over (it ended {meeting.ends_at:%Y-%m-%d %H:%M} UTC)"
            )
        settings = settings_from_json(meeting.settings)
        timezone = change.timezone or meeting.timezone
        start = change.aware_start(timezone) or meeting.starts_at
        minutes = change.duration_minutes or int(
            (meeting.ends_at - meeting.starts_at).total_seconds() // 60
        )
        spec = MeetingSpec(
            meeting_id=meeting.id,
            topic=change.topic or meeting.topic,
            start=start,
            duration=timedelta(minutes=minutes),
            timezone=timezone,
            host=Person(email=meeting.host_email, name=meeting.host_name),
            invitees=tuple(Person(email=i.email, name=i.name) for i in meeting.current_invitees),
            settings=settings,
        )
        ref = _ref(meeting)
        current = {i.email for i in meeting.current_invitees}
    errors: list[FieldError] = []
    if change.invitees is not None:
        people, channels = _new_invite_list(
            change,
            host=spec.host,
            settings=settings,
            channels=deps.channels,
            max_invitees=deps.settings.api.max_invitees,
            errors=errors,
        )
        spec = replace(spec, invitees=tuple(people))
    removed = sorted(current - {p.email for p in spec.invitees})
    # Only a start the caller moves must be ahead: a running meeting may still be renamed,
    # extended or given a late invitee, also by a calendar that sends every field again.
    if change.start is not None and start != meeting.starts_at and start < now - START_SKEW:
        errors.append(FieldError("start", "must not be in the past"))
    elif spec.end <= now:
        errors.append(FieldError("duration_minutes", "would end the meeting in the past"))
    if minutes > settings.max_duration_minutes:
        errors.append(
            FieldError(
                "duration_minutes",
                f"at most {settings.max_duration_minutes} under this meeting's policy",
            )
        )
    if errors:
        raise InvalidRequest(
            "; ".join(f"{e.field}: {e.reason}" for e in errors), errors=tuple(errors)
        )

    updated = await provider.update(spec, ref)
    revoked = await _revoke(provider, ref, removed)
    observed = await provider.verify(spec, updated)
    try:
        enforced, not_enforced = confirmed_enforcement(
            restrictive_controls(settings),
            updated,
            observed,
            meeting_id=meeting_id,
            must_enforce=effective_for_groups(deps.policy, host.groups).must_enforce,
        )
    except (VerificationFailed, ControlNotEnforceable) as failure:
        # The provider has already applied the change and now holds a meeting weaker than
        # the policy. It must not stay live with links in people's calendars: cancel it
        # (deleted at the provider, CANCEL to everyone), then report why.
        await cancel_meeting(
            deps, meeting_id=meeting_id, host=host, provider=provider, reason=failure.code
        )
        raise
    async with deps.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=host)
        _check_changeable(meeting)  # it may have been cancelled while we were away
        previous = {"start": meeting.starts_at.isoformat(), "end": meeting.ends_at.isoformat()}
        meeting.topic, meeting.timezone = spec.topic, spec.timezone
        meeting.starts_at, meeting.ends_at = spec.start, spec.end
        meeting.reference = dict(updated.reference)
        meeting.enforced, meeting.not_enforced = sorted(enforced), sorted(not_enforced)
        meeting.host_join_secret = seal_join(
            deps.cipher, updated.host, table="meetings", row_id=meeting.id
        )
        if change.invitees is not None:
            await _apply_invite_list(session, meeting, spec, channels, removed)
        for invitee in meeting.current_invitees:
            invitee.join_secret = seal_join(
                deps.cipher, updated.join_for(invitee.email), table="invitees", row_id=invitee.id
            )
            invitee.personal_link = invitee.email in updated.personal
        meeting.sequence += 1
        meeting.state = MeetingState.VERIFIED
        deliveries = await queue_deliveries(
            session, meeting, meeting.current_invitees, method=Method.REQUEST
        )
        taken_off = [i for i in meeting.invitees if i.email in removed]
        deliveries += await queue_deliveries(
            session, meeting, taken_off, method=Method.CANCEL, include_host=False
        )
        await record_event(
            session,
            actor=host.subject,
            action="meeting.rescheduled",
            target_type="meeting",
            target_id=meeting.id,
            details={
                "previous": previous,
                "start": spec.start.isoformat(),
                "end": spec.end.isoformat(),
                "sequence": meeting.sequence,
                "deliveries": len(deliveries),
                "invitees_removed": len(removed),
                "links_revoked": revoked,
            },
        )
        sequence = meeting.sequence
    log.info("meeting.rescheduled", meeting_id=meeting_id, sequence=sequence)
    return await _body(deps, meeting_id, host)


async def cancel_meeting(
    deps: Provisioning,
    *,
    meeting_id: str,
    host: Principal,
    provider: MeetingProvider,
    reason: str = "requested",
) -> dict[str, Any]:
    """Delete the meeting at the provider and send everyone a cancellation.

    `reason` is audited: "requested" by the host, or why provisioner cancelled it.

    Raises:
        MeetingNotFound, MeetingNotChangeable, ProviderError.
    """
    async with deps.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=host)
        _check_changeable(meeting)
        ref = _ref(meeting)
    try:
        await provider.delete(ref)
    except ProviderNotFound:
        pass  # already gone at the provider: the cancellation still goes out
    async with deps.db.session() as session:
        meeting = await get_meeting_for_host(session, meeting_id=meeting_id, host=host)
        _check_changeable(meeting)
        meeting.sequence += 1
        meeting.state = MeetingState.CANCELLED
        deliveries = await queue_deliveries(
            session, meeting, meeting.current_invitees, method=Method.CANCEL
        )
        await record_event(
            session,
            actor=host.subject,
            action="meeting.cancelled",
            target_type="meeting",
            target_id=meeting.id,
            details={
                "provider": meeting.provider,
                "sequence": meeting.sequence,
                "deliveries": len(deliveries),
                "reason": reason,
            },
        )
    log.info("meeting.cancelled", meeting_id=meeting_id, reason=reason)
    return await _body(deps, meeting_id, host)


async def end_meeting(
    deps: Provisioning, *, meeting_id: str, host: Principal, provider: MeetingProvider
) -> dict[str, Any]:
    """End a running meeting for everyone.

    `host` may also be a responder, who may end any meeting (the audit says which); a
    responder's response leaves out the host's own link.

    Raises:
        MeetingNotFound, MeetingNotChangeable, ProviderUnsupported (saying where the
        button is in the meeting window), ProviderError.
    """
    if Feature.END_FOR_ALL not in provider.features:
        raise unsupported(provider, Feature.END_FOR_ALL)
    async with deps.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=host)
        _check_changeable(meeting)
        ref = _ref(meeting)
    await provider.end(ref)
    async with deps.db.session() as session:
        meeting = await get_meeting_for_actor(session, meeting_id=meeting_id, actor=host)
        meeting.state = MeetingState.ENDED
        await record_event(
            session,
            actor=host.subject,
            action="meeting.ended",
            target_type="meeting",
            target_id=meeting.id,
            details={"provider": meeting.provider, "as": acting_as(meeting, host)},
        )
        status = await delivery_status_by_invitee(session, meeting.id)
        body = meeting_read(
            meeting,
            cipher=deps.cipher,
            include_host_join=is_host(meeting, host),
            delivery_status=status,
        )
    log.info("meeting.ended", meeting_id=meeting_id)
    return body


def _new_invite_list(
    change: MeetingUpdate,
    *,
    host: Person,
    settings: MeetingSettings,
    channels: frozenset[str],
    max_invitees: int,
    errors: list[FieldError],
) -> tuple[list[Person], dict[str, str]]:
    """The new list without the host, checked as a create would check it (the configured
    limit, the meeting's invitee domains, duplicates, configured channels); problems go
    into `errors`."""
    assert change.invitees is not None  # noqa: S101 (checked by the caller)
    if len(change.invitees) > max_invitees:
        errors.append(FieldError("invitees", f"at most {max_invitees} invitees per meeting"))
    people: list[Person] = []
    channel_of: dict[str, str] = {}
    for index, invitee in enumerate(change.invitees):
        field = f"invitees[{index}]"
        domain = invitee.email.rsplit("@", 1)[-1]
        if invitee.email in channel_of:
            errors.append(FieldError(f"{field}.email", "is listed twice"))
        elif settings.invitee_domains is not None and domain not in settings.invitee_domains:
            errors.append(FieldError(f"{field}.email", f"{domain} is not an allowed domain"))
        elif invitee.channel not in channels:
            errors.append(FieldError(f"{field}.channel", "is not a configured channel"))
        elif invitee.email != host.email:
            people.append(Person(email=invitee.email, name=invitee.name))
        channel_of[invitee.email] = invitee.channel
    if not people and not errors:
        errors.append(FieldError("invitees", "must name someone other than the host"))
    return people, channel_of


async def _revoke(provider: MeetingProvider, ref: MeetingRef, removed: list[str]) -> str:
    """'yes', 'none removed', or why the removed people's links still work."""
    if not removed:
        return "none removed"
    if not isinstance(provider, RevokesPersonalLinks):
        return f"not possible on {provider.name}"
    await provider.revoke_invitees(ref, removed)
    return "yes"


async def _apply_invite_list(
    session: AsyncSession,
    meeting: Meeting,
    spec: MeetingSpec,
    channels: dict[str, str],
    removed: list[str],
) -> None:
    """Mark removed people, add new ones, keep everyone else's row (and history)."""
    now = utcnow()
    by_email = {i.email: i for i in meeting.invitees}
    for email in removed:
        by_email[email].removed_at = now
    for position, person in enumerate(spec.invitees):
        row = by_email.get(person.email)
        if row is None:
            row = Invitee(
                id=str(uuid.uuid4()),
                meeting_id=meeting.id,
                email=person.email,
                position=position,
                name=person.name,
                join_secret=None,
            )
            meeting.invitees.append(row)
        row.removed_at, row.position, row.name = None, position, person.name
        row.channel = channels.get(person.email, row.channel or "email")
    await session.flush()
