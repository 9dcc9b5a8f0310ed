"""The ClickHouse sink: a Kafka consumer that inserts columnar batches exactly once.

* batches by size and time (``CRM_CLICKHOUSE_BATCH`` rows in a partition, that is in
  one insert, or ``CRM_CLICKHOUSE_BATCH_MS``);
* one insert per (table, topic, partition) with ``insert_deduplication_token``
  ``<topic>:<partition>:<first>-<last>``, also deduplicating materialized views;
* an intent file records each batch's offset ranges before inserting; after a
  crash the same ranges are re-inserted with the same tokens (ClickHouse drops
  them), so a different batch boundary on restart cannot double count;
* offsets are committed only after every insert of the batch succeeded;
* ClickHouse unavailable or busy: back off and retry the same insert, dropping
  nothing; rows ClickHouse refuses are split out of their insert and dead-lettered
  (``inserter.py``); SIGTERM ends every wait at once (the batch's intent is
  replayed at the next start);
* duplicate events (same event id at another offset, from a client retry or a
  replayed worker) are skipped: the identity stage tags every event id it had
  already routed (``repeat``), ``crm replay`` its copies (``replayed``), and only
  those records are looked up, in the batch and in the ``events`` table
  (``repeats.py``); the sink needs no state of its own outside ClickHouse;
* ClickHouse parses the rows: each insert is one MsgPack blob (``wire.py``), not
  Python values serialised one by one; a record that cannot be decoded or stored
  becomes a ``failed_events`` row (``error_type = 'sink'``, inserted with the same
  token) instead of stopping its batch;
* a batch's inserts run on a second thread while the next batch is read, decoded
  and encoded (one batch in flight; its offsets are committed, and its intent
  cleared, before the next batch's intent is written and its inserts start).
"""

from __future__ import annotations

import gc
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Message, TopicPartition

from pipeline import gc_tuning
from pipeline.config import Settings
from pipeline.kafka.commit import commit_until_done
from pipeline.kafka.group_member import sink_member
from pipeline.logs import get_logger
from pipeline.sinks.clickhouse.batch import TP, Insert, Prepared, gc_paused
from pipeline.sinks.clickhouse.event_wire import SinkRouted, event_record_row, read_event_record
from pipeline.sinks.clickhouse.inserter import Inserter, SinkStopped
from pipeline.sinks.clickhouse.intent import intent_file, load_intent, save_intent
from pipeline.sinks.clickhouse.repeats import (
    Candidate,
    copies_in_batch,
    copies_stored,
    lookups,
)
from pipeline.sinks.clickhouse.rows import (
    CHANGE_COLUMNS,
    EVENT_COLUMNS,
    FAILED_COLUMNS,
    MERGE_COLUMNS,
    SNAPSHOT_COLUMNS,
    Snapshot,
)
from pipeline.sinks.clickhouse.wire import (
    change_wire,
    failed_wire,
    merge_wire,
    message_failure,
    pack,
    pack_each,
    snapshot_wire,
)
from pipeline.wire.change import Change
from pipeline.wire.records import IdentityDecision, RoutedEvent

log = get_logger("clickhouse-sink")
BATCH_PARTITIONS = 8  # a batch holds at most this many partitions' worth of rows
_snapshot = msgspec.json.Decoder(Snapshot)
_decision = msgspec.json.Decoder(IdentityDecision)
_change = msgspec.json.Decoder(Change)


GROUP = "crm-clickhouse"


def consumer_group(settings: Settings, group: str = GROUP) -> str:
    return f"{settings.topic_prefix}{group}"


def source_topics(settings: Settings) -> list[str]:
    """What the sink consumes (and so whose lag it reports)."""
    names = ("events.by_customer", "events.dlq", "profiles", "identity.merges", "segments.changes")
    return [settings.topic(n) for n in names]


class ClickHouseSink:
    def __init__(self, settings: Settings, client: Client, *, group: str = GROUP) -> None:
        self.settings, self.client = settings, client
        self.lock = threading.Lock()  # the client is shared by the sink's two threads
        self.stop = threading.Event()
        self.inserter = Inserter(client, self.lock, self.stop)
        t = settings.topic
        self.tables: dict[str, tuple[str, list[str]]] = {
            t("events.by_customer"): ("events", EVENT_COLUMNS),
            t("events.dlq"): ("failed_events", FAILED_COLUMNS),
            t("profiles"): ("profile_snapshots", SNAPSHOT_COLUMNS),
            t("identity.merges"): ("customer_merges", MERGE_COLUMNS),
            t("segments.changes"): ("segment_changes", CHANGE_COLUMNS),
        }
        self.member = sink_member(
            settings, consumer_group(settings, group), list(self.tables), "clickhouse-sink"
        )
        self.in_flight: tuple[Prepared, Future[int]] | None = None  # inserting meanwhile
        self.intent_path = intent_file(settings)
        self.intent_path.parent.mkdir(parents=True, exist_ok=True)
        self.intent: dict[TP, tuple[int, int]] = load_intent(self.intent_path)
        self.carry: list[Message] = []
        # Highest offset per partition whose insert this process has begun. A consumer that
        # rejoins its group (a broker restart) fetches again from the last committed offset,
        # possibly before a batch whose commit was still pending: those records are skipped,
        # not inserted a second time under another batch's token.
        self.started: dict[TP, int] = {}
        self.stored: dict[TP, int] = {}  # highest offset per partition inserted
        self.committed: dict[TP, int] = {}  # highest offset per partition committed by us
        self.inserted = 0

    # --- batching ----------------------------------------------------------------

    def collect(self, max_rows: int, max_wait: float) -> dict[TP, list[Message]]:
        """Messages per partition, cut where a pending intent says the last batch ended.

        The batch ends when one partition has ``max_rows`` (each partition is one
        insert, and an insert's fixed cost is tens of milliseconds: inserts should be
        large), when all hold ``BATCH_PARTITIONS`` times that, or after ``max_wait``.
        """
        carried, self.carry = self.carry, []
        by_tp: dict[TP, list[Message]] = defaultdict(list)
        for msg in carried:
            by_tp[(msg.topic() or "", msg.partition() or 0)].append(msg)
        total, fullest = len(carried), max(map(len, by_tp.values()), default=0)
        cap = max_rows * BATCH_PARTITIONS
        deadline = time.monotonic() + max_wait
        while fullest < max_rows and total < cap and (left := deadline - time.monotonic()) > 0:
            room = min(10_000, cap - total, max_rows - fullest)  # no partition over max_rows
            for msg in self.consumer.consume(room, min(left, 0.2)):
                if msg.error() is None:
                    tp = (msg.topic() or "", msg.partition() or 0)
                    if (msg.offset() or 0) <= self.started.get(tp, -1):
                        continue  # re-read after a rejoin: a batch of ours already holds it
                    got = by_tp[tp]
                    got.append(msg)
                    total += 1
                    if len(got) > fullest:
                        fullest = len(got)
        for tp, (first, last) in list(self.intent.items()):
            mine = by_tp.get(tp)
            if not mine:
                continue
            if (mine[0].offset() or 0) > first:
                del self.intent[tp]  # someone committed past its start: nothing to replay
                continue
            beyond = [m for m in mine if (m.offset() or 0) > last]
            if beyond:  # they belong to the batch after the replayed one
                self.carry.extend(beyond)
                mine = by_tp[tp] = [m for m in mine if (m.offset() or 0) <= last]
                if not mine:
                    del by_tp[tp]
                    continue
            if (mine[-1].offset() or 0) < last:
                self.carry.extend(by_tp.pop(tp))  # wait until the whole range is back
        return dict(by_tp)

    def _events(
        self, msgs: list[Message], partition: int, failed: list[tuple[list[Any], Message]]
    ) -> list[tuple[list[Any], Message]]:
        routed: list[tuple[SinkRouted | RoutedEvent, Message]] = []
        doubtful = False
        for m in msgs:
            try:
                rec = read_event_record(m.value() or b"{}")
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                failed.append((message_failure(m, f"undecodable record: {exc}"), m))
                continue
            if rec is not None and rec.event is not None:
                routed.append((rec, m))
                doubtful = doubtful or rec.repeat or rec.event.replayed
        skip = self._copies(routed, partition) if doubtful else set()
        rows: list[tuple[list[Any], Message]] = []
        for rec, m in routed:
            offset = m.offset() or 0
            if skip and f"{partition}:{offset}" in skip:
                continue
            try:
                row = event_record_row(rec, m.value() or b"{}", offset, partition)
            except Exception as exc:  # one bad row must not stop the others
                failed.append((message_failure(m, f"events: {exc}"), m))
                continue
            rows.append((row, m))
        return rows

    def _copies(
        self, routed: list[tuple[SinkRouted | RoutedEvent, Message]], partition: int
    ) -> set[str]:
        """Positions of records that copy an event already written (``repeats.py``)."""
        batch = [
            Candidate(
                rec.customer_id,
                rec.event.message_id or "",
                f"{partition}:{m.offset() or 0}",
                rec.repeat,
                rec.event.replayed,
            )
            for rec, m in routed
            if rec.event is not None
        ]
        self.settle()  # the batch in flight may hold the first copies
        skip = copies_in_batch(batch)
        stored: list[tuple[str, str, int, int]] = []
        for sql, params in lookups(batch, skip):
            stored += [tuple(r) for r in self.inserter.query(sql, params).result_rows]
        return skip | copies_stored(batch, stored, skip)

    def rows_for(
        self, topic: str, msgs: list[Message]
    ) -> tuple[bytes, list[tuple[list[Any], Message]], list[tuple[list[Any], Message]]]:
        """The table's rows as one MsgPack blob, with their messages; ``failed_events`` rows."""
        table = self.tables[topic][0]
        partition = (msgs[0].partition() or 0) if msgs else 0
        failed: list[tuple[list[Any], Message]] = []
        pairs: list[tuple[list[Any], Message]] = []
        if table == "events":
            pairs = self._events(msgs, partition, failed)
        else:
            for m in msgs:
                try:
                    row = self._row(table, m, partition)
                except Exception as exc:  # undecodable or unstorable: dead-letter it
                    failed.append((message_failure(m, f"{table}: {exc}"), m))
                    continue
                if row is not None:
                    pairs.append((row, m))
        blob, bad = pack_each([row for row, _m in pairs])
        if bad:
            failed.extend(
                (message_failure(pairs[i][1], f"{table}: {why}"), pairs[i][1]) for i, why in bad
            )
            unpackable = {i for i, _why in bad}
            pairs = [pair for i, pair in enumerate(pairs) if i not in unpackable]
        if failed:
            log.warning("records not storable, see failed_events", table=table, n=len(failed))
        return blob, pairs, failed

    def _row(self, table: str, m: Message, partition: int) -> list[Any] | None:
        value, offset = m.value() or b"", m.offset() or 0
        if table == "failed_events":
            return failed_wire(value, m.headers(), partition, offset)
        if table == "segment_changes":
            return change_wire(_change.decode(value or b"{}"), partition, offset)
        if table == "profile_snapshots":
            return snapshot_wire(_snapshot.decode(value)) if value else None
        d = _decision.decode(value or b"{}")
        if d.action == "merged" and d.absorbed:
            return merge_wire(d.absorbed, d.customer_id, d.at, d.event_id)
        return None

    def prepare(self, by_tp: dict[TP, list[Message]]) -> Prepared:
        """Everything a batch needs before inserting: offset ranges and encoded inserts."""
        ranges = {tp: (msgs[0].offset() or 0, msgs[-1].offset() or 0) for tp, msgs in by_tp.items()}
        inserts: list[Insert] = []
        for (topic, partition), msgs in sorted(by_tp.items()):
            table, columns = self.tables[topic]
            first, last = ranges[(topic, partition)]
            token = f"{topic}:{partition}:{first}-{last}"
            blob, pairs, failed = self.rows_for(topic, msgs)
            if pairs:
                inserts.append(Insert(table, columns, blob, len(pairs), token, pairs))
            if failed:
                blob = pack([row for row, _m in failed])
                inserts.append(
                    Insert("failed_events", FAILED_COLUMNS, blob, len(failed), token, failed)
                )
        return Prepared(ranges, inserts)

    def start(self, batch: Prepared) -> None:
        """Record the batch's intent; its inserts may begin after this."""
        if batch.ranges:
            save_intent(self.intent_path, {**self.intent, **batch.ranges})
            for tp, (_first, last) in batch.ranges.items():
                self.started[tp] = max(self.started.get(tp, -1), last)

    def write(self, batch: Prepared) -> int:
        return sum(self.inserter.insert(part) for part in batch.inserts)

    def finish(self, batch: Prepared, written: int) -> None:
        """After every insert of the batch: commit its offsets, then clear its intent."""
        if not batch.ranges:
            return
        self.inserted += written
        for tp, (_first, last) in batch.ranges.items():
            self.stored[tp] = max(self.stored.get(tp, -1), last)
        if not self.commit_stored(batch.ranges):
            return  # the intent stays: whoever reads these ranges next replays them alike
        for tp in batch.ranges:
            self.intent.pop(tp, None)
        save_intent(self.intent_path, self.intent)

    def commit_stored(self, must: dict[TP, tuple[int, int]] | None = None) -> bool:
        """Commit every stored offset not committed yet: the batch's (``must``) and, of the
        partitions still assigned, any whose commit a rejoin refused (their records are
        skipped when read again, so no later batch would commit them)."""
        try:
            owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        except Exception:  # the fake consumer of unit tests, or a closed one
            owned = set()
        todo = {
            tp: last
            for tp, last in self.stored.items()
            if last > self.committed.get(tp, -1) and (tp in owned or tp in (must or {}))
        }
        if not todo:
            return True
        offsets = [TopicPartition(t, p, last + 1) for (t, p), last in todo.items()]
        if not commit_until_done(
            self.consumer, offsets, self.stop, "clickhouse-sink", self.member.stuck
        ):
            return False
        self.committed.update(todo)
        return True

    def flush(self, by_tp: dict[TP, list[Message]]) -> int:
        """One batch, start to end, on the calling thread."""
        if not by_tp:
            return 0
        batch = self.prepare(by_tp)
        self.start(batch)
        written = self.write(batch)
        self.finish(batch, written)
        return written

    @property
    def consumer(self) -> Consumer:
        return self.member.consumer

    def settle(self) -> None:
        """Wait for the batch in flight; commit its offsets and clear its intent."""
        if self.in_flight is not None:
            batch, inserted = self.in_flight
            self.in_flight = None
            self.finish(batch, inserted.result())

    def run(self, stop: threading.Event, max_rows: int = 10_000, max_wait: float = 1.0) -> None:
        self.stop = self.inserter.stop = stop
        pool = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-insert")
        try:
            gc.freeze()  # what startup loaded is never garbage: keep it out of collections
            while not stop.is_set():
                with gc_paused():
                    batch = self.prepare(self.collect(max_rows, max_wait))
                if self.in_flight is not None:
                    self.settle()
                elif not batch.ranges and self.stored != self.committed:
                    self.commit_stored()  # idle: offsets a rejoin refused to commit
                if not batch.ranges and self.member.heal():
                    self.carry = []  # the new consumer reads them again
                if batch.ranges:
                    self.start(batch)
                    self.in_flight = (batch, pool.submit(self.write, batch))
            self.settle()
        except SinkStopped:  # stopped while waiting for ClickHouse
            log.warning("stopped before the batch was stored; it is replayed at the next start")
        finally:
            pool.shutdown(wait=True)
            self.consumer.close()


def sink_main(
    settings: Settings, client: Client, stop: threading.Event, serve_sql: bool = True
) -> None:
    """Run the sink (and, for the embedded store, the SQL endpoint other processes use)."""
    from pipeline.sinks.clickhouse.query_server import serve

    sink = ClickHouseSink(settings, client)
    server = serve(settings) if serve_sql else None
    gc_tuning.tune(settings)
    try:
        sink.run(stop, settings.clickhouse_batch, settings.clickhouse_batch_ms / 1000)
    finally:
        if server is not None:
            server.shutdown()
