"""`heap.settle`: the collector settings a serving process runs with."""

from __future__ import annotations

import gc
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
def test_cyclic_garbage_made_after_settle_is_still_collected() -> None:
    heap.settle()

    class Node:
        partner: object

    first, second = Node(), Node()
    first.partner, second.partner = second, first
    del first, second
    assert gc.collect() >= 2
