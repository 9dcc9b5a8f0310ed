"""The profile stage's merge protocol, with an in-memory table and sinks."""

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from pipeline.events import LineItem, Page, PosTransaction
from pipeline.testing import ListSink, Outbox
from pipeline.transforms.profile import Profile, decode
from pipeline.wire.records import Forget, MergeCommand, RoutedEvent, encoder, routed_decoder
from pipeline.worker.stages import ProfileStage
from pipeline.worker.state import DAY_MS, decode_ids, seen_key

T = datetime(2026, 11, 1, tzinfo=UTC)


def page(eid: str, anon: str = "ck") -> Page:
    return Page(message_id=eid, anonymous_id=anon, timestamp=T, identities={"anonymous_id": anon})


def routed(cid: str, event) -> bytes:
    return encoder.encode(RoutedEvent(customer_id=cid, event=event))


def run(stage: ProfileStage, values: list[bytes]) -> None:
    asyncio.run(stage.process(values))


def deliver(stage: ProfileStage, outbox: Outbox) -> None:
    """Feed what the stage sent to by_customer back into it (one partition owns all here)."""
    while sent := outbox.take():
        run(stage, [v for topic, _k, v in sent if topic == "bc"])


def make(keep: int = 0):
    table: dict[bytes, bytes] = {}
    sink: ListSink[Profile] = ListSink()
    outbox = Outbox()
    return table, sink, outbox, ProfileStage(table, sink, outbox, by_customer="bc", keep=keep)


def test_events_fold_and_duplicates_do_not_count():
    table, sink, _, stage = make()
    run(stage, [routed("A", page("e1")), routed("A", page("e2")), routed("A", page("e1"))])
    p = decode(table[b"A"])
    assert p.events == 2 and p.page_views == 2
    assert len(sink.written) == 1  # one write per customer per batch


def test_merge_ships_profile_to_survivor_and_redirects_late_events():
    table, sink, outbox, stage = make()
    pos = PosTransaction(
        message_id="p1",
        loyalty_id="L",
        transaction_id="t",
        store_id="s",
        timestamp=T,
        items=[LineItem(sku="a", price=5)],
        total=5,
        identities={"loyalty_id": "L"},
    )
    run(stage, [routed("A", pos), routed("B", page("e1")), routed("B", page("e2"))])
    merge = encoder.encode(MergeCommand(customer_id="B", survivor="A", merge_id="B>A"))
    run(stage, [merge, routed("B", page("late"))])  # a late event for B after the merge
    deliver(stage, outbox)
    a, b = decode(table[b"A"]), decode(table[b"B"])
    assert a.events == 4 and a.orders == 1 and a.page_views == 3 and a.merges == ["B>A"]
    assert b.merged_into == "A"
    # replaying the merge command (a crash before commit) ships again, A applies it once
    run(stage, [merge])
    deliver(stage, outbox)
    assert decode(table[b"A"]).events == 4
    assert any(p.customer_id == "B" and p.merged_into == "A" for p in sink.written)


def test_forget_removes_the_profile():
    table, sink, _, stage = make()
    run(stage, [routed("A", page("e1"))])
    run(stage, [encoder.encode(Forget(customer_id="A", requested_at="now"))])
    assert b"A" not in table
    assert sink.written[-1].merged_into == "(forgotten)"


def test_records_round_trip():
    rec = RoutedEvent(customer_id="A", event=page("x"))
    assert routed_decoder.decode(encoder.encode(rec)) == rec
    assert msgspec.json.decode(encoder.encode(rec))["k"] == "event"


def test_replayed_event_at_a_tombstone_is_not_counted_twice_at_the_survivor():
    """A crash replays B's event after B was absorbed: its copy is already in the Absorb."""
    table, _sink, outbox, stage = make()
    run(stage, [routed("A", page("a1", "ca")), routed("B", page("e1"))])
    merge = encoder.encode(MergeCommand(customer_id="B", survivor="A", merge_id="B>A"))
    run(stage, [merge])
    outbox.take()  # the worker dies before its Absorb reaches Kafka; the tombstone persisted
    run(stage, [routed("B", page("e1")), merge])  # the replay: e1 reaches the tombstone first
    deliver(stage, outbox)
    assert decode(table[b"A"]).events == 2


@pytest.mark.parametrize("keep", [0, 100])
def test_replay_across_a_flush_boundary_is_deduplicated_without_ids_in_the_profile(keep: int):
    """Event ids live in per-day buckets beside the profile, not in it, and still dedupe
    (whether the stage decodes profiles per batch or keeps them between batches)."""
    table, _sink, _, stage = make(keep)
    first = [routed("A", page(f"e{i}")) for i in range(5)]
    run(stage, first[:3])  # flush 1
    run(stage, first[3:])  # flush 2
    run(stage, first)  # a replay of both batches after a crash
    p = decode(table[b"A"])
    assert p.events == 5 and p.page_views == 5
    assert p.seen == {}  # the stored profile carries no dedupe window
    assert p.seen_days == [int(T.timestamp() * 1000) // DAY_MS]
    assert decode_ids(table[seen_key("A", p.seen_days[0])]) == {f"e{i}" for i in range(5)}


def test_touch_cost_does_not_grow_with_history():
    """The stored profile stays the same size however many events were folded."""
    table, _sink, _, stage = make()
    run(stage, [routed("A", page(f"e{i}")) for i in range(10)])
    small = len(table[b"A"])
    run(stage, [routed("A", page(f"f{i}")) for i in range(2000)])
    assert len(table[b"A"]) - small < 64  # counters grow by digits, not by ids


def test_kept_profiles_are_the_tables_until_partitions_are_revoked():
    table, _sink, _, stage = make(keep=100)
    run(stage, [routed("A", page("e1"))])
    assert stage._cache  # kept for the next batch
    run(stage, [routed("A", page("e1")), routed("A", page("e2"))])  # replay + new: from memory
    assert decode(table[b"A"]).events == 2
    # Another worker owned the partition meanwhile and folded more: the table has it.
    other = decode(table[b"A"])
    other.events, other.page_views = 10, 10
    table[b"A"] = msgspec.json.encode(other)
    stage.invalidate()  # what the worker does on every revocation and assignment
    run(stage, [routed("A", page("e3"))])
    assert decode(table[b"A"]).events == 11


def test_a_forgotten_customer_leaves_nothing_kept():
    table, _sink, _, stage = make(keep=100)
    run(stage, [routed("A", page("e1"))])
    run(
        stage,
        [
            routed("A", page("e2")),
            encoder.encode(Forget(customer_id="A", requested_at="2026-11-01T00:00:00Z")),
        ],
    )
    assert b"A" not in table and not any(k[0] == "A" for k in stage._buckets)
    run(stage, [routed("A", page("e1"))])  # the old id: a new customer's first event
    assert decode(table[b"A"]).events == 1


def test_the_kept_profiles_are_bounded():
    table, _sink, _, stage = make(keep=10)
    for batch in range(5):
        run(stage, [routed(f"C{batch}-{i}", page(f"e{batch}-{i}")) for i in range(4)])
        assert len(stage._cache) <= 10
    assert len(table) == 2 * 20  # every profile and its bucket written all the same


@pytest.mark.parametrize("keep", [0, 100])
def test_old_dedupe_buckets_are_pruned_and_profiles_with_inline_ids_migrate(keep: int):
    table, _sink, _, stage = make(keep)
    days = [T + timedelta(days=d) for d in range(40)]
    events = [
        Page(message_id=f"d{i}", anonymous_id="ck", timestamp=t, identities={"anonymous_id": "ck"})
        for i, t in enumerate(days)
    ]
    run(stage, [routed("A", e) for e in events])
    p = decode(table[b"A"])
    assert len(p.seen_days) <= 32 and p.seen_days[-1] - p.seen_days[0] <= 30
    assert sum(1 for k in table if b"\x1fseen\x1f" in k) == len(p.seen_days)
    # A profile written before the buckets existed keeps its ids: they move to buckets.
    legacy = Profile(customer_id="L", events=1, seen={"old": int(T.timestamp() * 1000)})
    table[b"L"] = msgspec.json.encode(legacy)
    run(stage, [routed("L", page("old")), routed("L", page("new"))])
    migrated = decode(table[b"L"])
    assert migrated.events == 2 and migrated.seen == {}


def test_a_poison_record_is_dead_lettered_and_its_neighbours_still_fold():
    table: dict[bytes, bytes] = {}
    sink: ListSink[Profile] = ListSink()
    outbox = Outbox()
    stage = ProfileStage(table, sink, outbox, by_customer="bc", dlq="dlq")
    poison = [b"not json", b'{"type": "routed", "customer_id": 7}', b'{"type": "mystery"}']
    run(stage, [routed("A", page("e1")), *poison, routed("A", page("e2"))])
    assert decode(table[b"A"]).events == 2
    letters = [v for topic, _k, v in outbox.take() if topic == "dlq"]
    assert letters == poison  # the original bytes, for inspection and replay
    with pytest.raises(msgspec.DecodeError):  # no dead-letter topic: loud
        run(make()[3], [b"not json"])
