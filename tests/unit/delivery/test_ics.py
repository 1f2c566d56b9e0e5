from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from provisioner.delivery.base import Method, Role
from provisioner.delivery.ics import PERSONAL_NOTICE, build_invitation
from provisioner.providers.base import JoinDetails, Person
from tests.support import make_delivery_context

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def parse(data: bytes) -> tuple[icalendar.Calendar, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(data)
    [event] = calendar.events
    return calendar, event


def attendees(event: icalendar.Event) -> list[icalendar.vCalAddress]:
    value = event.get("ATTENDEE")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


class TestRequest:
    def test_calendar_properties(self) -> None:
        calendar, _ = parse(build_invitation(make_delivery_context(), now=NOW))

        assert calendar["METHOD"] == "REQUEST"
        assert calendar["VERSION"] == "2.0"
        assert calendar["PRODID"] == "-//provisioner//EN"

    def test_uid_sequence_and_stamp_come_from_the_context(self) -> None:
        context = make_delivery_context(sequence=3)

        _, event = parse(build_invitation(context, now=NOW))

        assert event["UID"] == context.uid
        assert event["SEQUENCE"] == 3
        assert event.decoded("DTSTAMP") == NOW

    def test_uid_is_stable_across_builds(self) -> None:
        context = make_delivery_context()

        first = parse(build_invitation(context, now=NOW))[1]
        second = parse(build_invitation(context))[1]

        assert first["UID"] == second["UID"]

    def test_times_carry_the_meeting_time_zone(self) -> None:
        calendar, event = parse(build_invitation(make_delivery_context(), now=NOW))

        assert event["DTSTART"].params["TZID"] == "Europe/Berlin"
        assert event["DTEND"].params["TZID"] == "Europe/Berlin"
        assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Europe/Berlin"]
        assert event.decoded("DTSTART") == datetime(2026, 12, 1, 13, tzinfo=UTC)
        assert event.decoded("DTSTART").replace(tzinfo=None) == datetime(2026, 12, 1, 14)

    def test_only_the_recipient_is_an_attendee(self) -> None:
        context = make_delivery_context()

        _, event = parse(build_invitation(context, now=NOW))

        [attendee] = attendees(event)
        assert str(attendee) == "mailto:ivan@example.org"
        assert attendee.params["CN"] == "Ivan Invitee"
        assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert attendee.params["RSVP"] == "FALSE"
        assert str(event["ORGANIZER"]) == "mailto:host@example.org"
        assert event["ORGANIZER"].params["CN"] == "Hana Host"

    def test_the_host_is_chair_and_already_accepted(self) -> None:
        context = make_delivery_context(
            role=Role.HOST, recipient=Person(email="host@example.org", name="Hana Host")
        )

        _, event = parse(build_invitation(context, now=NOW))

        [attendee] = attendees(event)
        assert attendee.params["ROLE"] == "CHAIR"
        assert attendee.params["PARTSTAT"] == "ACCEPTED"

    def test_join_details_are_in_location_url_and_description(self) -> None:
        context = make_delivery_context()

        _, event = parse(build_invitation(context, now=NOW))

        assert event["LOCATION"] == context.join.url
        assert event["URL"] == context.join.url
        description = str(event["DESCRIPTION"])
        assert context.join.url in description
        assert "Passcode: 831-552-09" in description
        assert PERSONAL_NOTICE in description
        assert "Never post this link publicly." in description
        assert event["STATUS"] == "CONFIRMED"
        assert event["CLASS"] == "PRIVATE"

    def test_shared_link_without_passcode_has_neither_notice_nor_passcode(self) -> None:
        context = make_delivery_context(
            personal=False, join=JoinDetails(url="https://meet.example.org/r")
        )

        _, event = parse(build_invitation(context, now=NOW))

        description = str(event["DESCRIPTION"])
        assert "Passcode" not in description
        assert PERSONAL_NOTICE not in description

    def test_line_breaks_in_names_cannot_add_properties(self) -> None:
        recipient = Person(
            email="ivan@example.org", name="Ivan\r\nATTENDEE:mailto:eve@evil.example"
        )
        context = make_delivery_context(
            recipient=recipient, topic="Review\r\nATTENDEE:mailto:eve@evil.example"
        )

        data = build_invitation(context, now=NOW)

        _, event = parse(data)
        assert [str(a) for a in attendees(event)] == ["mailto:ivan@example.org"]
        assert b"\r\nATTENDEE:mailto:eve" not in data

    def test_unknown_time_zone_is_refused(self) -> None:
        with pytest.raises(ValueError):
            build_invitation(make_delivery_context(timezone="Mars/Olympus"), now=NOW)

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError):
            build_invitation(make_delivery_context(), now=datetime(2026, 1, 1))

    def test_naive_meeting_times_are_refused(self) -> None:
        context = make_delivery_context(start=datetime(2026, 12, 1, 14))

        with pytest.raises(ValueError):
            build_invitation(context, now=NOW)


class TestCancel:
    def test_cancel_method_and_status(self) -> None:
        context = make_delivery_context(method=Method.CANCEL, sequence=4)

        calendar, event = parse(build_invitation(context, now=NOW))

        assert calendar["METHOD"] == "CANCEL"
        assert event["STATUS"] == "CANCELLED"
        assert event["UID"] == context.uid
        assert event["SEQUENCE"] == 4
        assert len(attendees(event)) == 1

    def test_uninviting_one_attendee_carries_no_status(self) -> None:
        # RFC 5546 3.2.5: STATUS:CANCELLED is for cancelling the whole event; a CANCEL
        # that takes one attendee off names them and leaves STATUS out.
        context = make_delivery_context(method=Method.CANCEL, sequence=2, uninvited=True)

        calendar, event = parse(build_invitation(context, now=NOW))

        assert calendar["METHOD"] == "CANCEL"
        assert "STATUS" not in event
        assert [str(a) for a in attendees(event)] == ["mailto:ivan@example.org"]
        assert event["SEQUENCE"] == 2
        assert "cancelled" not in str(event["DESCRIPTION"])

    def test_cancel_does_not_repeat_the_secret_link(self) -> None:
        context = make_delivery_context(method=Method.CANCEL)

        data = build_invitation(context, now=NOW)

        _, event = parse(data)
        assert "URL" not in event
        assert "LOCATION" not in event
        assert b"secret-token" not in data
        assert b"831-552-09" not in data


class TestTimeZones:
    @pytest.mark.parametrize(
        ("timezone", "start_utc", "local_wall_time"),
        [
            # New York: EDT (UTC-4) in July, EST (UTC-5) in December.
            ("America/New_York", datetime(2026, 7, 1, 18, tzinfo=UTC), "20260701T140000"),
            ("America/New_York", datetime(2026, 12, 1, 19, tzinfo=UTC), "20261201T140000"),
            # Berlin: CEST (UTC+2) in July, CET (UTC+1) in December.
            ("Europe/Berlin", datetime(2026, 7, 1, 12, tzinfo=UTC), "20260701T140000"),
            ("Europe/Berlin", datetime(2026, 12, 1, 13, tzinfo=UTC), "20261201T140000"),
        ],
    )
    def test_start_is_the_local_wall_time(
        self, timezone: str, start_utc: datetime, local_wall_time: str
    ) -> None:
        context = make_delivery_context(
            timezone=timezone, start=start_utc, end=start_utc.replace(hour=start_utc.hour + 1)
        )

        data = build_invitation(context, now=NOW)

        assert f"DTSTART;TZID={timezone}:{local_wall_time}".encode() in data
        calendar, event = parse(data)
        assert event.decoded("DTSTART") == start_utc
        assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == [timezone]

    def test_meeting_across_the_spring_change(self) -> None:
        # 8 March 2026: New York clocks jump from 02:00 EST to 03:00 EDT.
        context = make_delivery_context(
            timezone="America/New_York",
            start=datetime(2026, 3, 8, 6, tzinfo=UTC),  # 01:00 EST
            end=datetime(2026, 3, 8, 8, tzinfo=UTC),
        )  # 04:00 EDT

        data = build_invitation(context, now=NOW)

        assert b"DTSTART;TZID=America/New_York:20260308T010000" in data
        assert b"DTEND;TZID=America/New_York:20260308T040000" in data
        _, event = parse(data)
        # (Subtracting two datetimes in the same zone gives wall-clock time; compare in UTC.)
        assert event.decoded("DTSTART").astimezone(UTC) == context.start
        assert event.decoded("DTEND").astimezone(UTC) == context.end

    @pytest.mark.parametrize(
        ("timezone", "start_utc"),
        [
            # 1 November 2026, New York: 01:00-02:00 happens twice (EDT, then EST).
            ("America/New_York", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),  # the 2nd 01:30
            ("America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # the 1st 01:30
            # 25 October 2026, Berlin: 02:00-03:00 happens twice (CEST, then CET).
            ("Europe/Berlin", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),  # the 2nd 02:30
            # Starts before the repeated hour and ends in it.
            ("Europe/Berlin", datetime(2026, 10, 24, 23, 45, tzinfo=UTC)),
        ],
    )
    def test_times_in_the_repeated_hour_are_written_in_utc(
        self, timezone: str, start_utc: datetime
    ) -> None:
        # RFC 5545 3.3.5 reads a repeated local time as its first occurrence: written
        # with TZID, the second 01:30 would be shown an hour early.
        context = make_delivery_context(
            timezone=timezone, start=start_utc, end=start_utc + timedelta(minutes=45)
        )

        data = build_invitation(context, now=NOW)

        start_utc_text = start_utc.strftime("%Y%m%dT%H%M%SZ")
        end_utc_text = context.end.strftime("%Y%m%dT%H%M%SZ")
        assert f"DTSTART:{start_utc_text}".encode() in data
        assert f"DTEND:{end_utc_text}".encode() in data
        assert b"TZID" not in data
        _, event = parse(data)
        assert event.decoded("DTSTART") == context.start
        assert event.decoded("DTEND") == context.end

    def test_a_day_after_the_change_keeps_local_time(self) -> None:
        start = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST, only once
        context = make_delivery_context(
            timezone="America/New_York", start=start, end=start + timedelta(hours=1)
        )

        data = build_invitation(context, now=NOW)

        assert b"DTSTART;TZID=America/New_York:20261102T013000" in data
        first_reading = datetime(2026, 11, 2, 1, 30, tzinfo=ZoneInfo("America/New_York"))
        assert first_reading == start

    def test_utc_meeting_uses_utc_times(self) -> None:
        context = make_delivery_context(timezone="UTC")

        data = build_invitation(context, now=NOW)

        assert b"DTSTART:20261201T130000Z" in data
        assert parse(data)[1].decoded("DTSTART") == context.start
