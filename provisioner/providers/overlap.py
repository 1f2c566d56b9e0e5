"""Run independent provider calls at the same time, failing like the first that fails.

A provisioning request waits on the provider for most of its life (six Zoom calls, each a
round trip to the other side of the internet). Reads that do not depend on each other --
the meeting, the host's settings and the registrants when verifying, say -- can overlap,
which takes whole round trips off what the user waits for. `asyncio.TaskGroup` would wrap
a failure in an `ExceptionGroup`; callers here map `ProviderError`s, so `all_of` raises
the first failure itself, after cancelling and awaiting the calls still running (none is
left behind to finish, or fail, unobserved).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
async def all_of(first: Awaitable[A], second: Awaitable[B], /) -> tuple[A, B]: ...


@overload
async def all_of(
    first: Awaitable[A], second: Awaitable[B], third: Awaitable[C], /
) -> tuple[A, B, C]: ...


async def all_of(*calls: Awaitable[Any]) -> tuple[Any, ...]:
    """Await `calls` concurrently; their results in order, or the first failure."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return tuple(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
