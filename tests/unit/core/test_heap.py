"""`heap.settle`: the collector settings a serving process runs with."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from provisioner import heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """Undo `settle` after the test: this process builds many apps and must collect them."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settle_freezes_what_start_up_built_and_raises_the_thresholds() -> None:
    built_at_start_up = [object()]  # a container alive before settle()
    assert heap.settle() == gc.get_freeze_count() > 0
    assert gc.get_threshold() == (
        heap.YOUNG_THRESHOLD,
        heap.MIDDLE_THRESHOLD,
        heap.OLD_THRESHOLD,
    )
    assert not any(obj is built_at_start_up for obj in gc.get_objects())  # frozen: not walked


@pytest.mark.usefixtures("restored_collector")
def test_cyclic_garbage_made_after_settle_is_still_collected_without_asking() -> None:
    """The collector still runs by itself: a cycle made after `settle` is gone once more
    than the young threshold of containers has been allocated (no `gc.collect()` here)."""
    heap.settle()

    class Node:
        partner: object

    first, second = Node(), Node()
    first.partner, second.partner = second, first
    watched = weakref.ref(first)
    del first, second
    assert watched() is not None  # a cycle: reference counting alone cannot free it
    # Net allocations count towards the threshold only while alive: keep them.
    kept: list[list[None]] = [[] for _ in range(3 * heap.YOUNG_THRESHOLD)]
    assert watched() is None
    assert len(kept) == 3 * heap.YOUNG_THRESHOLD
