"""A batch between reading and inserting: offset ranges and the encoded inserts."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

TP = tuple[str, int]


class Insert(NamedTuple):
    """One insert: a table, its columns, the rows as one blob, their count, the token.

    ``items`` are the same rows with the Kafka message each came from: what the sink
    splits and dead-letters when ClickHouse refuses the blob.
    """

    table: str
    columns: list[str]
    blob: bytes
    rows: int
    token: str
    items: Sequence[tuple[list[Any], Any]]


class Prepared(NamedTuple):
    ranges: dict[TP, tuple[int, int]]
    inserts: list[Insert]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while a batch is read and encoded.

    A batch is tens of thousands of live messages, decoded events and rows; every
    automatic collection would walk them all again (it cost the sink about half of
    its Python time). Refcounting frees them once the batch is encoded, so the next
    collection after this sees little; nothing here creates cycles in bulk.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
