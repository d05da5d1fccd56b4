"""Freezing the start-up heap: later full collections skip it; a second freeze frees what was replaced."""

from __future__ import annotations

import gc
import weakref

from mediator.heap import freeze_long_lived


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_frozen_objects_leave_the_collector_and_replaced_ones_are_freed_at_the_next_freeze() -> None:
    try:
        old = _Node()
        ref = weakref.ref(old)
        freeze_long_lived()
        assert gc.get_freeze_count() > 0
        del old
        gc.collect()
        assert ref() is not None  # frozen: a full collection does not even look at it
        freeze_long_lived()  # a reload: thaw, collect, freeze what is alive now
        assert ref() is None
    finally:
        gc.unfreeze()
