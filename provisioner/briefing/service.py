"""Record and check briefing acknowledgements (once per person and provider)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.audit.service import record_event
from provisioner.auth.principal import Principal
from provisioner.briefing.errors import BriefingNotAcknowledged
from provisioner.briefing.models import BriefingAcknowledgement
from provisioner.db import utcnow
from provisioner.policy.document import BriefingAcknowledgementMode, PolicyDocument


def briefing_url(base_url: str, provider: str) -> str:
    """Where a host reads and acknowledges `provider`'s briefing."""
    return f"{base_url.rstrip('/')}/briefings/{provider}"


async def has_acknowledged(session: AsyncSession, *, host: Principal, provider: str) -> bool:
    """True if this person (by subject or, when verified, email) acknowledged `provider`."""
    who = [BriefingAcknowledgement.subject == host.subject]
    if host.email and host.email_verified and not host.is_integration:
        who.append(BriefingAcknowledgement.email == host.email.lower())
    found = await session.scalar(
        select(BriefingAcknowledgement.id)
        .where(BriefingAcknowledgement.provider == provider, or_(*who))
        .limit(1)
    )
    return found is not None


async def require_acknowledged(
    session: AsyncSession,
    *,
    policy: PolicyDocument,
    host: Principal,
    provider: str,
    base_url: str,
) -> None:
    """Refuse a meeting whose host has not acknowledged the provider's briefing, when the
    policy asks for it.

    Raises:
        BriefingNotAcknowledged: with the URL of the briefing page.
    """
    if policy.briefing_acknowledgement is not BriefingAcknowledgementMode.REQUIRED:
        return
    if not await has_acknowledged(session, host=host, provider=provider):
        raise BriefingNotAcknowledged(provider=provider, url=briefing_url(base_url, provider))


async def acknowledge_briefing(
    session: AsyncSession, *, host: Principal, provider: str
) -> BriefingAcknowledgement:
    """Record that `host` read `provider`'s card; acknowledging twice keeps the first."""
    existing = await session.scalar(
        select(BriefingAcknowledgement).where(
            BriefingAcknowledgement.subject == host.subject,
            BriefingAcknowledgement.provider == provider,
        )
    )
    if existing is not None:
        return existing
    row = BriefingAcknowledgement(
        id=str(uuid.uuid4()),
        subject=host.subject,
        # Only a verified address may stand for its owner: `has_acknowledged` matches by
        # email too, and IT's list would otherwise credit the address's real owner.
        email=host.email.lower() if host.email_verified and not host.is_integration else "",
        name=host.name,
        provider=provider,
        acknowledged_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    await record_event(
        session,
        actor=host.subject,
        action="briefing.acknowledged",
        target_type="briefing",
        target_id=provider,
        details={"provider": provider},
    )
    return row


async def list_acknowledgements(session: AsyncSession) -> Sequence[BriefingAcknowledgement]:
    """Everyone who has acknowledged a briefing, newest first (IT's admin page)."""
    rows = await session.scalars(
        select(BriefingAcknowledgement).order_by(
            BriefingAcknowledgement.acknowledged_at.desc(), BriefingAcknowledgement.id
        )
    )
    return rows.all()
