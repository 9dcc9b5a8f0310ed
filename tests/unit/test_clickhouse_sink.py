"""The ClickHouse sink's batch path against an embedded store, with Kafka and Redis faked.

Covers what the MsgPack path must keep: rows skipped as duplicates or forwarded
copies, records that cannot be decoded or stored going to ``failed_events``
without stopping their batch, the deduplication token (a replayed batch changes
nothing, aggregates included), offsets committed after the inserts, the intent
cleared, and the pipelined ``run`` loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import Page, Track
from pipeline.kafka import group_member
from pipeline.metrics import DEAD_LETTERED
from pipeline.sinks.clickhouse import inserter, runner
from pipeline.sinks.clickhouse.batch import Insert
from pipeline.sinks.clickhouse.client import connect, migrate
from pipeline.sinks.clickhouse.inserter import classify, reason_of
from pipeline.sinks.clickhouse.rows import FAILED_COLUMNS
from pipeline.sinks.clickhouse.runner import ClickHouseSink
from pipeline.sinks.clickhouse.wire import SINK_ERROR, SINK_SOURCE
from pipeline.wire.records import MergeCommand, RoutedEvent, encoder

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NOW_MS = 1_795_000_000_000


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return (1, NOW_MS)

    def error(self) -> None:
        return None


class FakeConsumer:
    """Hands out queued messages; sets ``stop`` once they are gone (for ``run``)."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.queue: list[FakeMessage] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.stop: threading.Event | None = None

    def subscribe(self, _topics: list[str]) -> None:
        return None

    def consume(self, n: int, _timeout: float) -> list[FakeMessage]:
        out, self.queue = self.queue[:n], self.queue[n:]
        if not out and self.stop is not None:
            self.stop.set()
        return out

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    migrate(client)
    yield client
    client.close()


@pytest.fixture
def sink(ch: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickHouseSink]:
    monkeypatch.setattr(group_member, "Consumer", FakeConsumer)
    for table in ("events", "failed_events", "profile_snapshots", "daily_channel_campaign"):
        ch.command(f"TRUNCATE TABLE {table}")
    s = Settings(topic_prefix="u.", redis_prefix="u.", data_dir=tmp_path)
    yield ClickHouseSink(s, ch)


def event_value(
    event: Any, forwarded: bool = False, repeat: bool = False, customer_id: str = "c1"
) -> bytes:
    return encoder.encode(
        RoutedEvent(customer_id=customer_id, event=event, forwarded=forwarded, repeat=repeat)
    )


def batch() -> list[FakeMessage]:
    topic = "u.events.by_customer"
    values = [
        event_value(Page(message_id="e1", name="Home", timestamp=T, received_at=T)),
        event_value(Page(message_id="e2", timestamp=T, received_at=T)),
        event_value(Page(message_id="e1", name="Home", timestamp=T, received_at=T), repeat=True),
        event_value(Page(message_id="e3", timestamp=T), forwarded=True),  # counted elsewhere
        b"\x00 not json",  # undecodable
        event_value(Track(message_id="e4", event="Order Completed", properties={"revenue": "NaN"})),
        encoder.encode(MergeCommand(customer_id="c1", survivor="c2", merge_id="m")),
        event_value(Track(message_id="e5", event="Order Completed", properties={"revenue": 5})),
    ]
    return [FakeMessage(topic, 2, 100 + i, v) for i, v in enumerate(values)]


def rows(ch: Client, sql: str) -> list[tuple[Any, ...]]:
    return list(ch.query(sql).result_rows)


def test_batch_rows_failures_commit_and_replay(sink: ClickHouseSink, ch: Client) -> None:
    by_tp = {("u.events.by_customer", 2): batch()}
    assert sink.flush(by_tp) == 5  # e1, e2, e5 and two failed_events rows
    assert rows(ch, "SELECT event_id, kafka_offset FROM events ORDER BY kafka_offset") == [
        ("e1", 100),
        ("e2", 101),
        ("e5", 107),
    ]
    failed = rows(
        ch,
        "SELECT source, error_type, event_id, kafka_partition, kafka_offset, received_at,"
        " startsWith(reason, 'undecodable'), original FROM failed_events ORDER BY kafka_offset",
    )
    assert [f[:5] for f in failed] == [
        (SINK_SOURCE, SINK_ERROR, "", 2, 104),
        (SINK_SOURCE, SINK_ERROR, "e4", 2, 105),
    ]
    assert failed[0][5].timestamp() == NOW_MS / 1000 and failed[0][6] == 1
    assert failed[0][7] == "\x00 not json"
    assert sink.consumer.commits == [[("u.events.by_customer", 2, 108)]]  # type: ignore[attr-defined]
    assert sink.intent_path.read_text() == "[]"

    # replayed after a crash: same ranges, same tokens, nothing changes (aggregates too)
    aggregates = "SELECT sum(events) FROM daily_channel_campaign"
    assert rows(ch, aggregates) == [(3,)]
    sink.flush(by_tp)
    assert rows(ch, "SELECT count() FROM events") == [(3,)]
    assert rows(ch, "SELECT count() FROM failed_events") == [(2,)]
    assert rows(ch, aggregates) == [(3,)]


def test_repeats_are_looked_up_where_the_first_copy_went(sink: ClickHouseSink, ch: Client) -> None:
    topic = "u.events.by_customer"

    def page(event_id: str, customer_id: str = "c1", at: datetime = T, **tags: bool) -> bytes:
        event = Page(message_id=event_id, timestamp=at, received_at=T)
        return event_value(event, customer_id=customer_id, **tags)

    first = [page("a"), page("b"), page("x", "c2")]
    sink.flush({(topic, 0): [FakeMessage(topic, 0, i, v) for i, v in enumerate(first)]})
    later = [
        page("a", repeat=True),  # a client's retry: a copy of offset 0
        page("n", repeat=True),  # routed before, but its first copy never reached Kafka
        # untagged: the identity stage routed b once (kept, not looked up; another event
        # time, so the ReplacingMergeTree's background merges cannot fold the two rows)
        page("b", at=T.replace(minute=1)),
    ]
    replayed = Page(message_id="x", timestamp=T, received_at=T, replayed=True)
    again = [*later, event_value(replayed, customer_id="c3")]  # crm replay, another customer
    msgs = [FakeMessage(topic, 0, 10 + i, v) for i, v in enumerate(again)]
    sink.flush({(topic, 0): msgs})
    assert rows(ch, "SELECT event_id, kafka_offset FROM events ORDER BY kafka_offset") == [
        ("a", 0),
        ("b", 1),
        ("x", 2),
        ("n", 11),
        ("b", 12),
    ]
    sink.flush({(topic, 0): msgs})  # the same records again at their own positions
    assert rows(ch, "SELECT count() FROM events") == [(5,)]


def test_a_whole_batch_of_repeats_is_looked_up_in_chunks(sink: ClickHouseSink, ch: Client) -> None:
    """After a worker's crash everything it re-sends is tagged: 10,000 ids of 36 characters
    in one query would pass ClickHouse's max_query_size and fail the batch at every start."""
    topic = "u.events.by_customer"
    ids = [f"{i:036d}" for i in range(10_000)]
    first = [event_value(Page(message_id=e, timestamp=T, received_at=T)) for e in ids]
    sink.flush({(topic, 1): [FakeMessage(topic, 1, i, v) for i, v in enumerate(first)]})
    again = [event_value(Page(message_id=e, timestamp=T, received_at=T), repeat=True) for e in ids]
    msgs = [FakeMessage(topic, 1, 10_000 + i, v) for i, v in enumerate(again)]
    assert sink.flush({(topic, 1): msgs}) == 0
    assert rows(ch, "SELECT count(), min(kafka_offset), max(kafka_offset) FROM events") == [
        (10_000, 0, 9_999)
    ]


def test_a_repeat_of_the_batch_in_flight_waits_for_it(sink: ClickHouseSink, ch: Client) -> None:
    topic = "u.events.by_customer"
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    values = []
    for block in range(4):  # ten records, then their ten copies: the next batch
        ids = [f"r{block * 10 + i}" for i in range(10)]
        values += [event_value(Page(message_id=e, received_at=T)) for e in ids]
        values += [event_value(Page(message_id=e, received_at=T), repeat=True) for e in ids]
    consumer.queue = [FakeMessage(topic, 0, i, v) for i, v in enumerate(values)]
    consumer.stop = stop = threading.Event()
    sink.run(stop, max_rows=10, max_wait=0.05)
    assert rows(ch, "SELECT count(), uniqExact(event_id) FROM events") == [(40, 40)]
    committed = {(t, p): o for commit in consumer.commits for t, p, o in commit}
    assert committed == {(topic, 0): 80}


def test_unstorable_snapshot_goes_to_failed_events(sink: ClickHouseSink, ch: Client) -> None:
    topic = "u.profiles"
    good = b'{"customer_id":"c1","version":1,"updated_at":1}'
    bad = b'{"customer_id":"c2","version":-1,"updated_at":1}'
    msgs = [FakeMessage(topic, 0, i, v) for i, v in enumerate([good, bad, b"", b"[1]"])]
    sink.flush({(topic, 0): msgs})
    assert rows(ch, "SELECT customer_id FROM profile_snapshots") == [("c1",)]
    assert rows(ch, "SELECT kafka_offset FROM failed_events ORDER BY kafka_offset") == [(1,), (3,)]


def test_run_inserts_batches_while_reading_the_next(sink: ClickHouseSink, ch: Client) -> None:
    topic = "u.events.by_customer"
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    consumer.queue = [
        FakeMessage(topic, i % 3, i // 3, event_value(Page(message_id=f"r{i}", received_at=T)))
        for i in range(90)
    ]
    consumer.stop = stop = threading.Event()
    sink.run(stop, max_rows=20, max_wait=0.05)
    assert rows(ch, "SELECT count(), uniqExact(event_id) FROM events") == [(90, 90)]
    committed = {(t, p): o for commit in consumer.commits for t, p, o in commit}
    assert committed == {(topic, p): 30 for p in range(3)}
    assert sink.inserted == 90 and sink.intent_path.read_text() == "[]"


def test_a_batch_ends_when_one_partition_fills_an_insert(sink: ClickHouseSink) -> None:
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    topic = "u.events.by_customer"
    consumer.queue = [FakeMessage(topic, i % 2, i // 2, b"{}") for i in range(200)]
    by_tp = sink.collect(max_rows=30, max_wait=5.0)  # well before the wait is over
    sizes = sorted(len(m) for m in by_tp.values())
    assert sizes[-1] == 30 and sizes[0] >= 29


def test_a_pending_intent_is_replayed_with_the_same_ranges(sink: ClickHouseSink) -> None:
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    topic = "u.events.by_customer"
    sink.intent = {(topic, 0): (0, 9), (topic, 1): (5, 7)}
    # partition 0 comes back whole and beyond; partition 1 only in part, so far
    consumer.queue = [FakeMessage(topic, 0, o, b"{}") for o in range(15)]
    consumer.queue += [FakeMessage(topic, 1, o, b"{}") for o in range(5, 7)]
    by_tp = sink.collect(max_rows=100, max_wait=0.05)
    assert [m.offset() for m in by_tp[(topic, 0)]] == list(range(10))
    assert (topic, 1) not in by_tp  # waits for offset 7
    del sink.intent[(topic, 0)]  # that batch is committed
    consumer.queue = [FakeMessage(topic, 1, o, b"{}") for o in range(7, 9)]
    by_tp = sink.collect(max_rows=100, max_wait=0.05)
    assert [m.offset() for m in by_tp[(topic, 0)]] == list(range(10, 15))
    assert [m.offset() for m in by_tp[(topic, 1)]] == [5, 6, 7]
    assert [m.offset() for m in sink.carry] == [8]


def test_records_the_lean_reading_leaves_go_through_the_contract(
    sink: ClickHouseSink, ch: Client
) -> None:
    topic = "u.events.by_customer"
    values = [
        b'{"k":"event","customer_id":"c","event":{"type":"future","messageId":"f1"}}',
        b'{"k":"event","customer_id":"c","event":{"type":"page","messageId":"p1","context":[]}}',
        event_value(Page(message_id="p2", received_at=T, context={"campaign": {"name": "x"}})),
    ]
    sink.flush({(topic, 0): [FakeMessage(topic, 0, i, v) for i, v in enumerate(values)]})
    assert rows(ch, "SELECT event_id, campaign FROM events") == [("p2", "x")]
    assert rows(ch, "SELECT event_id FROM failed_events ORDER BY kafka_offset") == [
        ("f1",),
        ("p1",),
    ]


# --- what ClickHouse refuses, and waiting for what is away (issue 17) ----------------------


def test_classify_clickhouse_errors() -> None:
    assert classify(OSError("connection refused")) == "transient"
    assert classify(Exception("Code: 252. DB::Exception: Too many parts")) == "transient"
    assert classify(Exception("Code: 60. DB::Exception: Table x does not exist")) == (
        "configuration"
    )
    assert classify(Exception("Code: 44. DB::Exception: Cannot insert MessagePack")) == "data"
    assert reason_of(
        Exception("Code: 44. DB::Exception: Code: 44. DB::Exception: bad value (version 26.9.2.1)")
    ) == ("bad value")


def snapshot_messages(ids: list[str]) -> list[FakeMessage]:
    values = [f'{{"customer_id":"{c}","version":1,"updated_at":1}}'.encode() for c in ids]
    return [FakeMessage("u.profiles", 0, i, v) for i, v in enumerate(values)]


@pytest.fixture
def poison_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Customers named ``poison*`` get a row msgspec packs and ClickHouse refuses."""
    real = runner.snapshot_wire

    def wire(s: Any) -> list[Any]:
        row = real(s)
        if s.customer_id.startswith("poison"):
            row[2] = "not a time"  # updated_at, a DateTime64 column
        return row

    monkeypatch.setattr(runner, "snapshot_wire", wire)


def test_a_row_clickhouse_refuses_is_split_out_and_dead_lettered(
    sink: ClickHouseSink, ch: Client, poison_wire: None
) -> None:
    ids = [f"c{i}" for i in range(9)]
    ids[3], ids[7] = "poison-a", "poison-b"
    by_tp = {("u.profiles", 0): snapshot_messages(ids)}
    before = DEAD_LETTERED.labels(SINK_ERROR)._value.get()
    assert sink.flush(by_tp) == 9  # 7 snapshots and 2 dead letters
    stored = rows(ch, "SELECT customer_id FROM profile_snapshots ORDER BY customer_id")
    assert [r[0] for r in stored] == sorted(i for i in ids if not i.startswith("poison"))
    failed = rows(ch, "SELECT kafka_offset, reason, original FROM failed_events ORDER BY 1")
    assert [f[0] for f in failed] == [3, 7]
    assert all(f[1].startswith("profile_snapshots: ") and "DateTime64" in f[1] for f in failed)
    assert '"poison-a"' in failed[0][2]
    assert DEAD_LETTERED.labels(SINK_ERROR)._value.get() - before == 2
    assert sink.consumer.commits == [[("u.profiles", 0, 9)]]  # type: ignore[attr-defined]

    # a crash before the commit replays the range: it splits the same way, tokens match
    sink.flush(by_tp)
    assert rows(ch, "SELECT count() FROM profile_snapshots") == [(7,)]
    assert rows(ch, "SELECT count() FROM failed_events") == [(2,)]


class FlakyClient:
    """The real client behind errors: ``errors`` are raised first, one per call."""

    def __init__(self, client: Client, errors: list[Exception]) -> None:
        self.client, self.errors, self.calls = client, errors, 0

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.client.raw_insert(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.query(*args, **kwargs)


@pytest.mark.parametrize(
    "error",
    [OSError("Connection refused"), Exception("Code: 60. DB::Exception: Table x doesn't exist")],
)
def test_unavailable_or_misconfigured_store_is_retried_not_dead_lettered(
    sink: ClickHouseSink, ch: Client, error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inserter, "MAX_DELAY_S", 0.01)
    flaky = FlakyClient(ch, [error, error])
    sink.inserter.client = flaky  # type: ignore[assignment]
    sink.flush({("u.profiles", 0): snapshot_messages(["a", "b"])})
    assert flaky.calls == 3
    assert rows(ch, "SELECT count() FROM profile_snapshots") == [(2,)]
    assert rows(ch, "SELECT count() FROM failed_events") == [(0,)]


def test_sigterm_ends_the_wait_for_clickhouse_without_committing(
    sink: ClickHouseSink, ch: Client
) -> None:
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    consumer.queue = snapshot_messages(["a", "b"])
    sink.inserter.client = FlakyClient(ch, [OSError("down")] * 1000)  # type: ignore[assignment]
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()  # the signal handler's job
    started = time.monotonic()
    sink.run(stop, max_rows=10, max_wait=0.05)
    assert time.monotonic() - started < 5
    assert consumer.commits == []
    assert "u.profiles" in sink.intent_path.read_text()  # replayed at the next start


def test_a_refused_dead_letter_keeps_its_position_and_reason(
    sink: ClickHouseSink, ch: Client
) -> None:
    (m,) = snapshot_messages(["x"])
    row = runner.message_failure(m, "profile_snapshots: whatever")
    row[0] = "not a time"  # received_at
    part = Insert("failed_events", FAILED_COLUMNS, runner.pack([row]), 1, "t:0:0-0", [(row, m)])
    assert sink.inserter.insert(part) == 1
    assert rows(ch, "SELECT kafka_offset, original, reason != '' FROM failed_events") == [
        (0, "", 1)
    ]


def test_an_intent_an_operator_committed_past_is_dropped(sink: ClickHouseSink) -> None:
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    topic = "u.events.by_customer"
    sink.intent = {(topic, 0): (0, 9)}
    consumer.queue = [FakeMessage(topic, 0, o, b"{}") for o in range(20, 25)]
    by_tp = sink.collect(max_rows=100, max_wait=0.05)
    assert [m.offset() for m in by_tp[(topic, 0)]] == list(range(20, 25))
    assert sink.intent == {} and sink.carry == []


def test_records_read_again_after_a_rejoin_are_not_inserted_twice(sink: ClickHouseSink) -> None:
    consumer: FakeConsumer = sink.consumer  # type: ignore[assignment]
    topic = "u.events.by_customer"
    consumer.queue = [FakeMessage(topic, 0, o, b"{}") for o in range(10)]
    first = sink.prepare(sink.collect(max_rows=100, max_wait=0.05))
    sink.start(first)  # its insert begins; the commit is still pending when...
    # ...the consumer rejoins and fetches again from the last committed offset
    consumer.queue = [FakeMessage(topic, 0, o, b"{}") for o in range(14)]
    again = sink.collect(max_rows=100, max_wait=0.05)
    assert [m.offset() for m in again[(topic, 0)]] == [10, 11, 12, 13]
