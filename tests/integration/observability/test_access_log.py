"""Our access log: one `http.request.completed` line per request, without the query string.

uvicorn's access log printed the full URL; a token in a query string (an emergency link, an
OIDC code) then relied on the redactor. Ours names the route template and never the query.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx

from provisioner.logs import configure_logging


async def logged(client: httpx.AsyncClient, *requests: tuple[str, dict[str, str]]) -> list[Any]:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream)
    try:
        for url, headers in requests:
            await client.get(url, headers=headers)
    finally:
        logging.getLogger().handlers.clear()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_line_per_request_with_route_status_and_request_id(
    client: httpx.AsyncClient, host_headers: dict[str, str]
) -> None:
    lines = await logged(
        client,
        ("/api/v1/meetings?limit=5&token=abcdef123456", host_headers | {"X-Request-Id": "r-1"}),
        ("/api/v1/meetings/not-a-meeting", host_headers),
        ("/no/such/page?code=oidc-code-123456", {}),
    )

    completed = [line for line in lines if line["event"] == "http.request.completed"]
    assert [(c["route"], c["status"]) for c in completed] == [
        ("/api/v1/meetings", 200),
        ("/api/v1/meetings/{meeting_id}", 404),
        ("unmatched", 404),
    ]
    assert completed[0]["request_id"] == "r-1"
    assert all(c["method"] == "GET" and c["duration_ms"] >= 0 for c in completed)
    text = json.dumps(lines)
    assert "abcdef123456" not in text
    assert "oidc-code-123456" not in text
