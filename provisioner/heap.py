"""Garbage-collector settings for a long-running server process.

CPython's defaults suit short scripts. In a server under load they cost a lot: measured
at 64 concurrent creates, about 1.5 ms of each request's 8 ms went to the cyclic
collector. Two reasons. A request's objects live for its whole round trip to the
provider, so under concurrency they are still alive when a young collection runs, get
promoted, and push the collector into frequent full collections. And each full
collection walks everything imported at start-up (about 190,000 objects: modules, routes,
schemas) although none of it ever becomes garbage.

`settle()` fixes both once start-up is over: it freezes what start-up left (frozen objects
are never examined again) and raises the young generation's threshold so a collection
runs every 50,000 net allocations instead of every 700. Reference counting still frees
everything that is not in a cycle at once; only cyclic garbage waits longer, bounded by
the thresholds. `bench/provision.py` measures the effect; the README gives the figures.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Net container allocations between young collections (CPython's default is 700)."""
MIDDLE_THRESHOLD = 20
"""Young collections between middle ones (default 10)."""
OLD_THRESHOLD = 100
"""Middle collections before a full one is considered (default 10); CPython also waits
until the long-lived objects grew by a quarter, and frozen ones do not count."""


def settle() -> int:
    """Collect once, freeze what start-up built, and set the server's thresholds.

    Returns how many objects are frozen (the app logs it with `app.started`).

    Call it when the process has finished starting (everything imported, the app and its
    state built), and only in a process that serves for long: frozen objects are never
    collected, so a test run that builds many apps must not call it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    return gc.get_freeze_count()
