"""The ClickHouse sink's batch path against an embedded store, with Kafka and Redis faked.

Covers what the MsgPack path must keep: rows skipped as duplicates or forwarded
copies, records that cannot be decoded or stored going to ``failed_events``
without stopping their batch, the deduplication token (a replayed batch changes
nothing, aggregates included), offsets committed after the inserts, the intent
cleared, and the pipelined ``run`` loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import Page, Track
from pipeline.sinks.clickhouse import runner
from pipeline.sinks.clickhouse.client import connect, migrate
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


class FakeMarkers:
    """Redis' SET NX GET in a dict."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def duplicates(self, records: list[tuple[str, str]]) -> set[str]:
        return {at for eid, at in records if self.seen.setdefault(eid, at) != at}


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    migrate(client)
    yield client
    client.close()


@pytest.fixture
def sink(ch: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickHouseSink]:
    monkeypatch.setattr(runner, "Consumer", FakeConsumer)
    for table in ("events", "failed_events", "profile_snapshots", "daily_channel_campaign"):
        ch.command(f"TRUNCATE TABLE {table}")
    s = Settings(topic_prefix="u.", redis_prefix="u.", data_dir=tmp_path)
    out = ClickHouseSink(s, ch)
    out.markers = FakeMarkers()  # type: ignore[assignment]
    yield out
    out.io.shutdown()


def event_value(event: Any, forwarded: bool = False) -> bytes:
    return encoder.encode(RoutedEvent(customer_id="c1", event=event, forwarded=forwarded))


def batch() -> list[FakeMessage]:
    topic = "u.events.by_customer"
    values = [
        event_value(Page(message_id="e1", name="Home", timestamp=T, received_at=T)),
        event_value(Page(message_id="e2", timestamp=T, received_at=T)),
        event_value(Page(message_id="e1", name="Home", timestamp=T, received_at=T)),  # a copy
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
    sink.markers = FakeMarkers()  # type: ignore[assignment]  # markers expired, say
    sink.flush(by_tp)
    assert rows(ch, "SELECT count() FROM events") == [(3,)]
    assert rows(ch, "SELECT count() FROM failed_events") == [(2,)]
    assert rows(ch, aggregates) == [(3,)]


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
