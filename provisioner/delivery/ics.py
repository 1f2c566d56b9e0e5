"""The iCalendar (RFC 5545 / iTIP RFC 5546) invitation sent to one person.

Each invitee gets their own calendar object naming only themselves as ATTENDEE: a
calendar client shows every attendee it is given, so a shared attendee list would tell
each invitee who else was invited (and, forwarded, tell strangers). The UID is stable for
the meeting's whole life and SEQUENCE grows with each update, so a client replaces the
earlier invitation rather than adding a second one.

Times are written as local time in the meeting's zone (with its VTIMEZONE), so a client
shows them as the host meant them -- except when the start or end falls in an hour the
clocks repeat or skip: RFC 5545 3.3.5 reads a repeated local time as its *first*
occurrence, so a meeting in the second one would be shown an hour early. Such a meeting's
DTSTART and DTEND are both written in UTC, which means one instant only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar

from provisioner.delivery.base import DeliveryContext, Method, Role
from provisioner.delivery.render import meeting_zone, single_line
from provisioner.providers.base import Person

PERSONAL_NOTICE = "This link is yours alone: do not forward it; a forwarded link identifies you."
PUBLIC_NOTICE = "Never post this link publicly."

# A VTIMEZONE only has to cover the dates the event uses; a year either side keeps the
# object small (the full 1970-2038 table is several kilobytes) and survives a reschedule.
_ZONE_MARGIN = timedelta(days=366)


def build_invitation(
    context: DeliveryContext,
    *,
    prodid: str = "-//provisioner//EN",
    now: datetime | None = None,
) -> bytes:
    """Build the .ics for `context.recipient` alone.

    A REQUEST carries the join details (LOCATION, URL, DESCRIPTION); a CANCEL does
    not, because the client only needs the UID to remove the event and the link is a
    secret that should travel as rarely as possible. A CANCEL that only takes this
    invitee off the meeting (`context.uninvited`) carries no STATUS: RFC 5546 3.2.5
    keeps STATUS:CANCELLED for cancelling the whole event.

    Args:
        context: the meeting and the one person it is for.
        prodid: the PRODID naming this product.
        now: the DTSTAMP (an aware datetime; defaults to the current time).

    Returns:
        The calendar object, CRLF line endings, UTF-8.

    Raises:
        ValueError: the meeting's time zone is unknown, or a datetime is naive.
    """
    stamp = datetime.now(UTC) if now is None else now
    if any(moment.tzinfo is None for moment in (stamp, context.start, context.end)):
        # astimezone() would silently read a naive time as the server's local time.
        raise ValueError("start, end and now must be aware datetimes")
    zone = meeting_zone(context.timezone)
    start = context.start.astimezone(zone)
    end = context.end.astimezone(zone)
    if _ambiguous(start) or _ambiguous(end):
        # Both in UTC, not just the ambiguous one: a client then has one way to read
        # the event's times, and DTEND cannot end up before DTSTART.
        start, end = start.astimezone(UTC), end.astimezone(UTC)
    cancelled = context.method is Method.CANCEL

    event = icalendar.Event()
    event.add("uid", context.uid)
    event.add("sequence", context.sequence)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", context.topic)
    event.add("organizer", _address(context.organizer))
    event.add("attendee", _attendee(context))
    if not context.uninvited:
        event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    # Calendars are often shared with colleagues or assistants; PRIVATE asks clients
    # to show them "busy" rather than the description, which holds the join link.
    event.add("class", "PRIVATE")
    if not cancelled:
        event.add("location", context.join.url)
        event.add("url", context.join.url)
        event.add("description", describe_join(context))
    elif context.uninvited:
        event.add("description", "Your invitation to this meeting has been withdrawn.")
    else:
        event.add("description", "This meeting has been cancelled.")

    calendar = icalendar.Calendar()
    calendar.add("prodid", prodid)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", context.method.value)
    calendar.add_component(event)
    # Adds nothing when the times were written in UTC.
    calendar.add_missing_timezones(
        first_date=start.date() - _ZONE_MARGIN,
        last_date=end.date() + _ZONE_MARGIN,
    )
    serialised: bytes = calendar.to_ical()
    return serialised


def describe_join(context: DeliveryContext) -> str:
    """The DESCRIPTION text: how to join and how to treat the link."""
    lines = [f"Join: {context.join.url}"]
    if context.join.passcode:
        lines.append(f"Passcode: {context.join.passcode}")
    lines.append("")
    if context.personal:
        lines.append(PERSONAL_NOTICE)
    lines.append(PUBLIC_NOTICE)
    return "\n".join(lines)


def _ambiguous(local: datetime) -> bool:
    """Whether `local`'s wall-clock time in its zone names two instants (the hour the
    clocks go back) or none (the hour they skip): the other `fold` then has another
    offset."""
    return local.utcoffset() != local.replace(fold=1 - local.fold).utcoffset()


def _attendee(context: DeliveryContext) -> icalendar.vCalAddress:
    # The host is the organizer too: marking them CHAIR/ACCEPTED stops clients from
    # asking the organizer to answer their own invitation.
    host = context.role is Role.HOST
    return icalendar.vCalAddress.new(
        context.recipient.email,
        cn=_display_name(context.recipient),
        role="CHAIR" if host else "REQ-PARTICIPANT",
        partstat="ACCEPTED" if host else "NEEDS-ACTION",
        rsvp=False,
    )


def _address(person: Person) -> icalendar.vCalAddress:
    return icalendar.vCalAddress.new(person.email, cn=_display_name(person))


def _display_name(person: Person) -> str | None:
    # icalendar quotes and escapes what is left safely; control characters would only
    # confuse clients that display the CN.
    return single_line(person.name) or None
