"""The client side of the fault tests: a calendar integration asking for a Zoom meeting."""

from __future__ import annotations

import httpx

from tests.factories import meeting_body

# One body per run: a retry must send the same body (the start time is computed).
BODY = meeting_body(provider="zoom")
INVITEES = len(BODY["invitees"])
RECIPIENTS = INVITEES + 1  # and the host


async def create(client: httpx.AsyncClient, headers: dict[str, str], key: str) -> httpx.Response:
    """POST a Zoom meeting with the calendar event's key as the Idempotency-Key."""
    return await client.post(
        "/api/v1/meetings", json=BODY, headers=headers | {"Idempotency-Key": key}
    )


async def create_twice(
    client: httpx.AsyncClient, headers: dict[str, str], key: str
) -> tuple[httpx.Response, httpx.Response]:
    """The request and the client's retry with the same key and body."""
    first = await create(client, headers, key)
    return first, await create(client, headers, key)
