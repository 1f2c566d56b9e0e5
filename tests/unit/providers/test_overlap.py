"""`all_of`: overlapping provider calls fail exactly as one call would, leaving none behind."""

from __future__ import annotations

import asyncio

import pytest

from provisioner.providers.errors import ProviderRetriable
from provisioner.providers.overlap import all_of


async def test_results_come_back_in_the_order_asked() -> None:
    async def after(turns: int, value: str) -> str:
        for _ in range(turns):
            await asyncio.sleep(0)
        return value

    assert await all_of(after(3, "meeting"), after(0, "settings"), after(1, "people")) == (
        "meeting",
        "settings",
        "people",
    )


async def test_the_calls_overlap() -> None:
    started: list[str] = []
    both_running = asyncio.Event()

    async def call(name: str) -> str:
        started.append(name)
        if len(started) == 2:
            both_running.set()
        await both_running.wait()  # a sequential caller would wait here for ever
        return name

    assert await asyncio.wait_for(all_of(call("a"), call("b")), timeout=30) == ("a", "b")


async def test_the_first_failure_is_raised_as_itself_and_the_rest_are_cancelled() -> None:
    slow_finished = False
    slow_cancelled = asyncio.Event()

    async def slow() -> str:
        nonlocal slow_finished
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise
        slow_finished = True
        return "never"

    async def failing() -> str:
        await asyncio.sleep(0)
        raise ProviderRetriable("zoom GET /users/x/settings answered 503", provider="zoom")

    with pytest.raises(ProviderRetriable, match="answered 503"):
        await all_of(slow(), failing())
    assert slow_cancelled.is_set()  # cancelled and awaited before the error came back
    assert not slow_finished
