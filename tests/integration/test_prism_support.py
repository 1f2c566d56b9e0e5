"""The Prism harness itself: it starts, validates requests, and reports violations."""

from __future__ import annotations

import httpx

from tests.support.prism import SPECS, prism, violations


class TestPrismHarness:
    def test_valid_request_passes_and_invalid_one_is_flagged(self) -> None:
        with prism(SPECS / "webex" / "webex-meeting.json") as server:
            good = httpx.post(
                server.base_url + "/meetings",
                json={
                    "title": "Planning",
                    "start": "2030-03-04T15:00:00Z",
                    "end": "2030-03-04T16:00:00Z",
                    "password": "Abcdef123456",
                },
                timeout=10,
            )
            bad = httpx.post(server.base_url + "/meetings", json={"title": 5}, timeout=10)
        assert violations(good) == []
        assert violations(bad)
