"""Who hears of a new incident, and what each is told.

The host, the reporter's manager and HR/security each get a private email notice through
the outbox (queued in the report's own transaction, so nobody hears of a report that was
not stored). Nobody is told a join link or passcode. HR/security get the summary and a link
to the incident; the host gets a link to the follow-up they are asked to complete; the
manager is told that a report exists and who handles it, with no link, because only
responders and the reporter may open it.

The manager comes from the sign-in's `manager_email` claim when the identity provider sends
one, else from `[incidents] managers` in the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from provisioner.auth.principal import Principal
from provisioner.delivery.notices import NoticeRefused, queue_notice
from provisioner.delivery.render import format_meeting_time, provider_label
from provisioner.incidents.models import Incident
from provisioner.meetings.models import Meeting
from provisioner.providers.base import Person
from provisioner.settings import Settings

KIND = "incident.filed"


@dataclass(frozen=True)
class Recipient:
    person: Person
    why: str  # "host", "manager" or "responder"


def manager_of(reporter: Principal, settings: Settings) -> str | None:
    """The reporter's manager: a claim if the principal carries one, else the config map."""
    if reporter.manager_email:
        return reporter.manager_email
    return settings.incidents.managers.get(
        reporter.email.lower()
    ) or settings.incidents.managers.get(reporter.email)


def recipients(meeting: Meeting, reporter: Principal, settings: Settings) -> list[Recipient]:
    """Host, manager, then HR/security; each address once, in that order."""
    chosen: list[Recipient] = [
        Recipient(Person(email=meeting.host_email, name=meeting.host_name), "host")
    ]
    manager = manager_of(reporter, settings)
    if manager:
        chosen.append(Recipient(Person(email=manager, name="Manager"), "manager"))
    chosen += [
        Recipient(Person(email=email, name="Security team"), "responder")
        for email in settings.incidents.notify_emails
    ]
    seen: set[str] = set()
    unique = []
    for recipient in chosen:
        key = recipient.person.email.lower()
        if key not in seen:
            seen.add(key)
            unique.append(recipient)
    return unique


async def notify_filed(
    session: AsyncSession,
    *,
    incident: Incident,
    meeting: Meeting,
    reporter: Principal,
    settings: Settings,
) -> int:
    """Queue one notice per recipient; returns how many were queued."""
    base = settings.api.public_url.rstrip("/")
    when = format_meeting_time(meeting.starts_at, meeting.timezone, meeting.ends_at)
    about = f'"{meeting.topic}" ({provider_label(meeting.provider)}, {when})'
    queued = 0
    for recipient in recipients(meeting, reporter, settings):
        if recipient.why == "responder":
            lines = [
                f"{reporter.name} ({reporter.email}) reported an incident in the meeting {about}.",
                f"Summary: {incident.summary}",
                "The evidence was frozen when the report was filed. Please triage it.",
            ]
            link: str | None = f"{base}/incidents/{incident.id}"
        elif recipient.why == "host":
            lines = [
                f"An incident was reported in your meeting {about}.",
                "HR/security have the report and will contact you if they need more.",
                "You are asked to complete a short security follow-up for hosts.",
            ]
            link = f"{base}/incidents/{incident.id}/training"
        else:
            lines = [
                f"{reporter.name} reported an incident that happened in a meeting ({when}).",
                "HR/security have been notified and are handling it; you may want to check "
                f"in with {reporter.name}.",
            ]
            link = None
        subject = (
            f"Incident reported: {meeting.topic}"
            if recipient.why != "manager"
            else "An incident was reported by someone on your team"
        )
        try:
            await queue_notice(
                session,
                meeting_id=meeting.id,
                recipient=recipient.person,
                kind=KIND,
                subject=subject,
                lines=lines,
                link=link,
            )
        except NoticeRefused:
            # The summary or the topic looked like it carried a join secret (or was too
            # long): send the same notice without them rather than lose the report.
            await queue_notice(
                session,
                meeting_id=meeting.id,
                recipient=recipient.person,
                kind=KIND,
                subject=_PLAIN_SUBJECT[recipient.why],
                lines=_PLAIN_LINES[recipient.why],
                link=link,
            )
        queued += 1
    return queued


# Used when the full notice is refused: nothing copied from the report or the meeting.
_PLAIN_SUBJECT = {
    "responder": "Incident reported",
    "host": "Incident reported in your meeting",
    "manager": "An incident was reported by someone on your team",
}
_PLAIN_LINES = {
    "responder": [
        "An incident was reported in a meeting; its summary or topic could not be included "
        "in this message. Open the incident to triage it.",
        "The evidence was frozen when the report was filed.",
    ],
    "host": [
        "An incident was reported in one of your meetings.",
        "HR/security have the report and will contact you if they need more.",
        "You are asked to complete a short security follow-up for hosts.",
    ],
    "manager": [
        "Someone on your team reported an incident that happened in a meeting.",
        "HR/security have been notified and are handling it.",
    ],
}
