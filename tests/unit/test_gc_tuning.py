from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pipeline import gc_tuning
from pipeline.config import Settings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tuning_freezes_start_up_objects_and_spaces_young_collections(restore_gc: None) -> None:
    built_at_start = [{"model": i} for i in range(1000)]
    gc_tuning.tune(Settings(gc_threshold=40_000))
    assert gc.get_threshold() == (40_000, 20, 10)
    assert gc.get_freeze_count() >= len(built_at_start)


def test_cycles_made_after_tuning_are_still_collected(restore_gc: None) -> None:
    gc_tuning.tune(Settings(gc_threshold=40_000))

    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = id(a)
    del a, b
    gc.collect()
    assert all(id(o) != ref for o in gc.get_objects() if isinstance(o, Node))


def test_zero_keeps_pythons_defaults(restore_gc: None) -> None:
    before = gc.get_threshold()
    gc_tuning.tune(Settings(gc_threshold=0))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
