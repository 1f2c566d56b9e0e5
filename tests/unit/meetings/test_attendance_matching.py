"""`compare_attendance`: strong matches by email, weak by name, strangers and impostors
flagged, and a report that survives a JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from provisioner.meetings.attendance import AttendanceReport, compare_attendance
from provisioner.meetings.models import Invitee, Meeting
from provisioner.providers.base import Participant

START = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)


def meeting(*people: tuple[str, str], removed: tuple[str, ...] = ()) -> Meeting:
    row = Meeting(
        id="m-1",
        host_subject="dana",
        host_email="dana@example.com",
        host_name="Dana Host",
        topic="Planning",
        provider="fake",
        starts_at=START,
        ends_at=START,
        timezone="UTC",
        settings={},
        ics_uid="m-1@provisioner",
    )
    row.invitees = [
        Invitee(
            id=f"i-{n}",
            meeting_id="m-1",
            position=n,
            email=email,
            name=name,
            removed_at=START if email in removed else None,
        )
        for n, (email, name) in enumerate(people)
    ]
    return row


def person(name: str, email: str | None = None, pid: str | None = None) -> Participant:
    return Participant(name=name, email=email, provider_participant_id=pid)


ANA = ("ana@example.com", "Ana Lima")
BEN = ("ben@example.com", "Ben Okafor")


def statuses(report: AttendanceReport) -> list[tuple[str, str, str | None]]:
    return [(p.name, p.status, p.matched_email) for p in report.participants]


class TestMatching:
    def test_email_is_a_strong_match_whatever_the_display_name(self) -> None:
        report = compare_attendance(
            meeting(ANA),
            [person("ana (laptop)", "ANA@example.com"), person("Dana", "dana@example.com")],
        )
        assert statuses(report) == [
            ("ana (laptop)", "matched", "ana@example.com"),
            ("Dana", "matched", "dana@example.com"),
        ]
        assert report.unknown == []
        host = next(p for p in report.invited if p.role == "host")
        assert host.present and not host.present_by_name_only

    def test_name_only_is_weak_and_ignores_case_and_spacing(self) -> None:
        report = compare_attendance(meeting(ANA, BEN), [person("  ben   OKAFOR ")])
        assert statuses(report) == [("  ben   OKAFOR ", "weak", "ben@example.com")]
        ben = next(p for p in report.invited if p.email == "ben@example.com")
        assert ben.present and ben.present_by_name_only
        assert [p.name for p in report.weak] == ["  ben   OKAFOR "]

    def test_strangers_are_unknown_and_say_why(self) -> None:
        report = compare_attendance(
            meeting(ANA), [person("Mallory"), person("Eve", "eve@evil.example")]
        )
        assert [p.status for p in report.unknown] == ["unknown", "unknown"]
        assert report.unknown[0].note == "not on the invite list"
        assert report.unknown[1].note == "signed in with an email that is not invited"

    def test_an_invited_name_under_another_email_is_unknown(self) -> None:
        report = compare_attendance(meeting(ANA), [person("Ana Lima", "ana.lima@gmail.example")])
        [match] = report.unknown
        assert "another email" in (match.note or "")

    def test_a_copy_of_someone_present_under_their_email_is_unknown(self) -> None:
        report = compare_attendance(
            meeting(ANA), [person("Ana Lima", "ana@example.com"), person("Ana Lima")]
        )
        assert [p.status for p in report.participants] == ["matched", "unknown"]
        assert "present under their own email" in (report.participants[1].note or "")

    def test_a_name_two_invitees_share_matches_neither(self) -> None:
        twins = meeting(("a1@example.com", "Sam Lee"), ("a2@example.com", "Sam Lee"))
        [match] = compare_attendance(twins, [person("Sam Lee")]).participants
        assert match.status == "unknown" and "more than one" in (match.note or "")

    def test_someone_taken_off_the_meeting_is_no_longer_invited(self) -> None:
        report = compare_attendance(
            meeting(ANA, BEN, removed=("ben@example.com",)), [person("B", "ben@example.com")]
        )
        assert [p.status for p in report.participants] == ["unknown"]
        assert "ben@example.com" not in {p.email for p in report.invited}

    def test_nobody_there_means_nobody_present(self) -> None:
        report = compare_attendance(meeting(ANA), [])
        assert report.participants == [] and not any(p.present for p in report.invited)


class TestReport:
    def test_round_trips_through_json(self) -> None:
        report = compare_attendance(
            meeting(ANA),
            [person("Mallory", pid="p-9"), person("Ana", "ana@example.com")],
            checked_at=START,
        )
        data = json.loads(json.dumps(report.model_dump(mode="json")))
        assert AttendanceReport.model_validate(data) == report
        assert data["checked_at"] == "2030-05-06T09:00:00Z"

    def test_keys_are_stable_and_prefer_the_provider_id(self) -> None:
        first = compare_attendance(meeting(ANA), [person("Mallory", pid="p-9"), person("Eve")])
        again = compare_attendance(meeting(ANA), [person("Eve"), person("Mallory", pid="p-9")])
        assert first.participants[0].key == "id:p-9"
        assert first.participants[1].key == again.participants[0].key
        assert first.participants[1].key.startswith("hash:")
