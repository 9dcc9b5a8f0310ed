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
    by_customer, by_id = lookups(batch, copies_in_batch(batch))
    assert by_customer == {"customers": ["c2"], "ids": ["e2"]}
    assert by_id == {"ids": ["e3", "e4"]}
    assert lookups([Candidate("c1", "e1", "0:1")], set()) == (None, None)


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
def stream(draw: st.DrawFn) -> tuple[list[str], list[int], set[int]]:
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=40))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(ids) - 1)), max_size=8)))
    replays = draw(st.sets(st.integers(0, len(cuts)), max_size=3))
    return ids, cuts, replays


@given(stream())
def test_whatever_the_batches_and_replays_each_event_is_stored_once(
    drawn: tuple[list[str], list[int], set[int]],
) -> None:
    ids, cuts, replays = drawn
    routed: set[str] = set()
    records = []
    for offset, event_id in enumerate(ids):  # the identity stage tags what it routed before
        records.append(Candidate("c1", event_id, f"0:{offset}", repeat=event_id in routed))
        routed.add(event_id)
    bounds = [0, *cuts, len(records)]
    stored: dict[str, tuple[str, str, int, int]] = {}  # by position: a replayed block is one
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        batch = records[start:end]
        for _attempt in range(2 if i in replays else 1):
            skip = copies_in_batch(batch)
            skip |= copies_stored(batch, stored.values(), skip)
            for c in batch:
                if c.at not in skip:
                    stored[c.at] = (c.customer_id, c.event_id, 0, int(c.at.split(":")[1]))
    firsts = {event_id: ids.index(event_id) for event_id in ids}
    assert sorted(o for _c, _e, _p, o in stored.values()) == sorted(firsts.values())
