"""The ClickHouse sink's copy decisions (``repeats.py``): examples and a property.

The property plays the whole path: records arrive in order, the identity stage tags every
event id it routed before (``repeat``), the sink cuts them into arbitrary batches, decides
with ``copies_in_batch`` + ``copies_stored`` against what earlier batches stored, and may
replay any batch after a "crash" (same positions). The stored rows must be exactly the
first record of each event id, whatever the cuts and replays.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from pipeline.sinks.clickhouse.repeats import (
    LOOKUP_CHUNK,
    REPEATS_SQL,
    REPLAYED_SQL,
    Candidate,
    copies_in_batch,
    copies_stored,
    lookups,
)


def test_a_repeat_of_an_earlier_record_in_the_batch_is_a_copy() -> None:
    batch = [
        Candidate("c1", "e1", "0:1"),
        Candidate("c1", "e2", "0:2"),
        Candidate("c1", "e1", "0:3", repeat=True),
        Candidate("c1", "e2", "0:4"),  # untagged: the identity stage did not route e2 twice
        Candidate("c1", "", "0:5", repeat=True),  # no id: nothing to compare
    ]
    assert copies_in_batch(batch) == {"0:3"}


def test_lookups_ask_only_for_records_in_doubt() -> None:
    batch = [
        Candidate("c1", "e1", "0:1"),
        Candidate("c2", "e2", "0:2", repeat=True),
        Candidate("c1", "e1", "0:3", repeat=True),
        Candidate("c3", "e3", "0:4", replayed=True),
        Candidate("c4", "e4", "0:5", repeat=True, replayed=True),
    ]
    assert lookups(batch, copies_in_batch(batch)) == [
        (REPEATS_SQL, {"customers": ["c2"], "ids": ["e2"]}),
        (REPLAYED_SQL, {"ids": ["e3", "e4"]}),
    ]
    assert lookups([Candidate("c1", "e1", "0:1")], set()) == []


def test_lookups_name_at_most_a_chunk_of_ids() -> None:
    """A worker's replay tags a whole batch: 10,000 ids of 36 characters bound into one
    query would pass ClickHouse's 256 KiB ``max_query_size`` and fail the batch forever."""
    batch = [Candidate(f"c{i % 7}", f"{i:036d}", f"0:{i}", repeat=True) for i in range(10_000)]
    queries = lookups(batch, set())
    assert len(queries) == 10 and all(len(p["ids"]) == LOOKUP_CHUNK for _s, p in queries)
    assert sorted(i for _s, p in queries for i in p["ids"]) == [c.event_id for c in batch]


def test_stored_rows_at_another_position_make_a_copy() -> None:
    batch = [
        Candidate("c1", "e1", "0:10", repeat=True),  # stored at 0:1: a copy
        Candidate("c1", "e2", "0:11", repeat=True),  # stored at its own position: a replay
        Candidate("c1", "e3", "0:12", repeat=True),  # the first copy never arrived
        Candidate("c1", "e4", "0:13", repeat=True),  # e4 is stored for another customer
        Candidate("c9", "e5", "0:14", replayed=True),  # crm replay: any customer counts
        Candidate("c1", "e6", "0:15"),  # not in doubt
    ]
    rows = [
        ("c1", "e1", 0, 1),
        ("c1", "e2", 0, 11),
        ("c2", "e4", 3, 4),
        ("c2", "e5", 3, 5),
        ("c1", "e6", 0, 1),
    ]
    assert copies_stored(batch, rows, set()) == {"0:10", "0:14"}
    assert copies_stored(batch, rows, {"0:10"}) == {"0:14"}  # decided in the batch already


@st.composite
def stream(draw: st.DrawFn) -> tuple[list[str], set[int], list[int], set[int]]:
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=40))
    lost = draw(st.sets(st.integers(0, len(ids) - 1), max_size=4))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(ids) - 1)), max_size=8)))
    replays = draw(st.sets(st.integers(0, len(cuts)), max_size=3))
    return ids, lost, cuts, replays


def found(rows: list[tuple[str, str, int, int]], sql: str, params: dict[str, list[str]]) -> list:
    """What ClickHouse answers the lookup query with."""
    if sql == REPEATS_SQL:
        return [r for r in rows if r[0] in params["customers"] and r[1] in params["ids"]]
    return [r for r in rows if r[1] in params["ids"]]


@given(stream())
def test_whatever_the_batches_and_replays_each_event_is_stored_once(
    drawn: tuple[list[str], set[int], list[int], set[int]],
) -> None:
    """``lost``: records the identity stage routed (so their later copies are tagged) that
    never reached Kafka, as when it crashed between Redis and the produce."""
    ids, lost, cuts, replays = drawn
    routed: set[str] = set()
    records = []
    for offset, event_id in enumerate(ids):  # the identity stage tags what it routed before
        if offset not in lost:
            records.append(Candidate("c1", event_id, f"0:{offset}", repeat=event_id in routed))
        routed.add(event_id)
    bounds = [0, *[c for c in cuts if c < len(records)], len(records)]
    stored: dict[str, tuple[str, str, int, int]] = {}  # by position: a replayed block is one
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        batch = records[start:end]
        for _attempt in range(2 if i in replays else 1):
            skip = copies_in_batch(batch)
            rows = list(stored.values())
            answer = [r for sql, params in lookups(batch, skip) for r in found(rows, sql, params)]
            skip |= copies_stored(batch, answer, skip)
            for c in batch:
                if c.at not in skip:
                    stored[c.at] = (c.customer_id, c.event_id, 0, int(c.at.split(":")[1]))
    firsts: dict[str, int] = {}
    for c in records:
        firsts.setdefault(c.event_id, int(c.at.split(":")[1]))
    assert sorted(o for _c, _e, _p, o in stored.values()) == sorted(firsts.values())
