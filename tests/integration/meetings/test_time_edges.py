"""Times at the edges: DST changes, dates too far ahead, list cursors we never wrote.

Each was found by fuzzing: a meeting across a DST change ended an hour early or late
(the end was computed in wall-clock time), and the far-future dates and odd cursors were
500s (an overflow shifting the time to UTC, a naive time given to a UTC column).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from provisioner.meetings.models import Meeting
from provisioner.state import AppState
from tests.factories import meeting_body


def refused_field(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [error["field"] for error in response.json()["errors"]]


def next_year() -> int:
    return datetime.now(UTC).year + 1


class TestAcrossDaylightSaving:
    @pytest.mark.parametrize(
        ("local_start", "minutes", "utc_start", "utc_end"),
        [
            # Europe/Berlin springs forward at 02:00 on the last Sunday of March...
            ("03-{spring}T01:30:00", 120, "03-{spring}T00:30:00", "03-{spring}T02:30:00"),
            # 02:30 does not exist that day: read with the earlier offset, i.e. 03:30 CEST.
            ("03-{spring}T02:30:00", 60, "03-{spring}T01:30:00", "03-{spring}T02:30:00"),
            # ... and falls back at 03:00 on the last Sunday of October.
            ("10-{autumn}T01:30:00", 120, "10-{autumn_eve}T23:30:00", "10-{autumn}T01:30:00"),
        ],
    )
    async def test_the_meeting_lasts_its_duration_in_real_time(
        self,
        client: httpx.AsyncClient,
        host_headers: dict[str, str],
        state: AppState,
        local_start: str,
        minutes: int,
        utc_start: str,
        utc_end: str,
    ) -> None:
        year = next_year()
        days = _transition_days(year)
        start = f"{year}-{local_start.format(**days)}"
        body = meeting_body(start=start, duration_minutes=minutes, timezone="Europe/Berlin")
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 201, response.text
        created = response.json()
        expected_start = datetime.fromisoformat(f"{year}-{utc_start.format(**days)}+00:00")
        expected_end = datetime.fromisoformat(f"{year}-{utc_end.format(**days)}+00:00")
        assert datetime.fromisoformat(created["start"]) == expected_start
        assert datetime.fromisoformat(created["end"]) == expected_end
        async with state.db.session() as session:
            meeting = await session.scalar(select(Meeting).where(Meeting.id == created["id"]))
        assert meeting is not None
        assert meeting.ends_at - meeting.starts_at == timedelta(minutes=minutes)


def _transition_days(year: int) -> dict[str, str]:
    """The last Sundays of March and October (Berlin's changes), and the day before the
    October one (its 01:30 local is still the previous day in UTC)."""

    def last_sunday(month: int) -> datetime:
        day = datetime(year, month, 31, tzinfo=ZoneInfo("Europe/Berlin"))
        return day - timedelta(days=(day.weekday() + 1) % 7)

    spring, autumn = last_sunday(3), last_sunday(10)
    return {
        "spring": f"{spring.day:02d}",
        "autumn": f"{autumn.day:02d}",
        "autumn_eve": f"{autumn.day - 1:02d}",
    }


class TestTooFarAhead:
    @pytest.mark.parametrize(
        "start",
        [
            "9999-12-31T23:00:00",
            "9999-12-31T23:00:00Z",
            "9999-12-31T23:00:00+14:00",
            "0001-01-01T00:00:00+14:00",
            f"{datetime.now(UTC).year + 6}-01-01T10:00:00",
        ],
    )
    async def test_a_create_is_422_naming_start(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], start: str
    ) -> None:
        body = meeting_body(start=start, timezone="Pacific/Kiritimati")
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert "start" in refused_field(response)

    async def test_a_reschedule_is_422_naming_start_and_changes_nothing(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        created = await client.post("/api/v1/meetings", json=meeting_body(), headers=host_headers)
        assert created.status_code == 201, created.text
        meeting_id = created.json()["id"]
        response = await client.patch(
            f"/api/v1/meetings/{meeting_id}",
            json={"start": "9999-12-31T23:00:00"},
            headers=host_headers,
        )
        assert refused_field(response) == ["start"]
        after = await client.get(f"/api/v1/meetings/{meeting_id}", headers=host_headers)
        assert after.json()["start"] == created.json()["start"]

    async def test_four_years_ahead_is_fine(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        start = (datetime.now(UTC) + timedelta(days=4 * 365)).replace(microsecond=0)
        body = meeting_body(start=start.isoformat())
        response = await client.post("/api/v1/meetings", json=body, headers=host_headers)
        assert response.status_code == 201, response.text


class TestCursorsWeNeverWrote:
    @pytest.mark.parametrize(
        "raw",
        [
            "2024-01-01T00:00:00|x",  # no offset
            "2024-01-01|x",
            "9999-12-31T23:59:59-14:00|x",  # past the calendar's end in UTC
            "0001-01-01T00:00:00+14:00|x",  # before its start
            "2024-01-01T00:00:00+00:00|",  # no id
            "2024-01-01T00:00:00+00:00|not-a-meeting-id",
            "2024-01-01T00:00:00+00:00|\x00",  # inside the base64, where no guard looks
        ],
    )
    async def test_422_naming_the_cursor(
        self, client: httpx.AsyncClient, host_headers: dict[str, str], raw: str
    ) -> None:
        cursor = base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()
        response = await client.get(f"/api/v1/meetings?cursor={cursor}", headers=host_headers)
        assert refused_field(response) == ["cursor"]

    async def test_a_cursor_the_api_returned_still_pages(
        self, client: httpx.AsyncClient, host_headers: dict[str, str]
    ) -> None:
        for _ in range(3):
            created = await client.post(
                "/api/v1/meetings", json=meeting_body(), headers=host_headers
            )
            assert created.status_code == 201, created.text
        first = (await client.get("/api/v1/meetings?limit=2", headers=host_headers)).json()
        cursor = first["next_cursor"]
        second = await client.get(f"/api/v1/meetings?limit=2&cursor={cursor}", headers=host_headers)
        assert second.status_code == 200, second.text
        ids = [m["id"] for m in first["data"]] + [m["id"] for m in second.json()["data"]]
        assert len(set(ids)) == 3
