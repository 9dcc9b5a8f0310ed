"""The ClickHouse sink: a Kafka consumer that inserts columnar batches exactly once.

* batches by size and time (``CRM_CLICKHOUSE_BATCH`` rows or ``CRM_CLICKHOUSE_BATCH_MS``);
* one insert per (table, topic, partition) with ``insert_deduplication_token``
  ``<topic>:<partition>:<first>-<last>``, also deduplicating materialized views;
* an intent file records each batch's offset ranges before inserting; after a
  crash the same ranges are re-inserted with the same tokens (ClickHouse drops
  them), so a different batch boundary on restart cannot double count;
* offsets are committed only after every insert of the batch succeeded;
* ClickHouse unavailable: back off and retry the same insert, dropping nothing;
* duplicate events (same event id at another offset, from a client retry or a
  replayed worker) are skipped with a Redis marker keyed by event id whose value
  is the record's own position, so a retried record is never mistaken for a copy;
  events re-published by ``crm replay`` (possibly older than the markers' TTL) are
  also checked against the ``events`` table itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import redis
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.metrics import EVENTS_OUT, SINK_SECONDS
from pipeline.sinks.clickhouse.rows import (
    CHANGE_COLUMNS,
    EVENT_COLUMNS,
    FAILED_COLUMNS,
    MERGE_COLUMNS,
    SNAPSHOT_COLUMNS,
    Snapshot,
    change_row,
    event_row,
    failed_row,
    snapshot_row,
)
from pipeline.transforms.profile import Change
from pipeline.worker.records import IdentityDecision, RoutedEvent, routed_decoder

log = get_logger("clickhouse-sink")
TP = tuple[str, int]
SEEN_TTL_S = 7 * 24 * 3600
_snapshot = msgspec.json.Decoder(Snapshot)
_decision = msgspec.json.Decoder(IdentityDecision)
_change = msgspec.json.Decoder(Change)


class ClickHouseSink:
    def __init__(
        self, settings: Settings, client: Client, *, group: str = "crm-clickhouse"
    ) -> None:
        self.settings, self.client = settings, client
        self.lock = threading.Lock()  # the client is shared with the query server
        t = settings.topic
        self.tables: dict[str, tuple[str, list[str]]] = {
            t("events.by_customer"): ("events", EVENT_COLUMNS),
            t("events.dlq"): ("failed_events", FAILED_COLUMNS),
            t("profiles"): ("profile_snapshots", SNAPSHOT_COLUMNS),
            t("identity.merges"): ("customer_merges", MERGE_COLUMNS),
            t("segments.changes"): ("segment_changes", CHANGE_COLUMNS),
        }
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"{settings.topic_prefix}{group}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "max.poll.interval.ms": 3_600_000,
            }
        )
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.intent_path = (
            settings.data_dir / "sinks" / f"{settings.topic_prefix}clickhouse-intent.json"
        )
        self.intent_path.parent.mkdir(parents=True, exist_ok=True)
        self.intent: dict[TP, tuple[int, int]] = self._load_intent()
        self.carry: list[Message] = []
        self.inserted = 0

    # --- intent log -------------------------------------------------------------

    def _load_intent(self) -> dict[TP, tuple[int, int]]:
        if not self.intent_path.exists():
            return {}
        raw = json.loads(self.intent_path.read_text())
        return {(t, int(p)): (a, b) for t, p, a, b in raw}

    def _save_intent(self, ranges: dict[TP, tuple[int, int]]) -> None:
        tmp = self.intent_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([[t, p, a, b] for (t, p), (a, b) in ranges.items()]))
        tmp.replace(self.intent_path)

    # --- batching ----------------------------------------------------------------

    def collect(self, max_rows: int, max_wait: float) -> dict[TP, list[Message]]:
        """Messages per partition, cut where a pending intent says the last batch ended."""
        messages, self.carry = self.carry, []
        deadline = time.monotonic() + max_wait
        while len(messages) < max_rows and (remaining := deadline - time.monotonic()) > 0:
            for msg in self.consumer.consume(
                min(10_000, max_rows - len(messages)), min(remaining, 0.2)
            ):
                if msg.error() is None:
                    messages.append(msg)
        by_tp: dict[TP, list[Message]] = defaultdict(list)
        for msg in messages:
            tp = (msg.topic() or "", msg.partition() or 0)
            pending = self.intent.get(tp)
            if pending and (msg.offset() or 0) > pending[1]:
                self.carry.append(msg)  # belongs to the batch after the replayed one
                continue
            by_tp[tp].append(msg)
        for tp, (first, last) in list(self.intent.items()):
            got = by_tp.get(tp)
            if got and (got[0].offset() or 0) > first:
                del self.intent[tp]  # someone already committed past it
            elif got and (got[-1].offset() or 0) < last:
                self.carry.extend(by_tp.pop(tp))  # wait until the whole range is back
        return by_tp

    def _duplicates(self, records: list[tuple[str, str]]) -> set[str]:
        """Positions whose event id was already written from another position."""
        if not records:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        prefix = f"{self.settings.redis_prefix}chseen:"
        for event_id, position in records:
            pipe.set(prefix + event_id, position, nx=True, ex=SEEN_TTL_S)
            pipe.get(prefix + event_id)
        out = pipe.execute()
        return {
            position
            for (_eid, position), stored in zip(records, out[1::2], strict=True)
            if stored is not None and stored.decode() != position
        }

    def _already_inserted(self, event_ids: list[str]) -> set[str]:
        """Replayed events may be older than the Redis markers' TTL: ask ClickHouse itself."""
        if not event_ids:
            return set()
        with self.lock:
            result = self.client.query(
                "SELECT DISTINCT event_id FROM events WHERE event_id IN %(ids)s",
                parameters={"ids": event_ids},
            )
        return {row[0] for row in result.result_rows}

    def rows_for(self, topic: str, msgs: list[Message]) -> list[list[Any]]:
        table = self.tables[topic][0]
        rows: list[list[Any]] = []
        if table == "events":
            routed = []
            for m in msgs:
                rec = routed_decoder.decode(m.value() or b"{}")
                if isinstance(rec, RoutedEvent) and not rec.forwarded:
                    routed.append((rec, m))
            dupes = self._duplicates(
                [(r.event.message_id or "", f"{m.partition()}:{m.offset()}") for r, m in routed]
            )
            present = self._already_inserted(
                [r.event.message_id or "" for r, m in routed if r.event.replayed]
            )
            for rec, m in routed:
                if rec.event.replayed and (rec.event.message_id or "") in present:
                    continue
                if f"{m.partition()}:{m.offset()}" not in dupes:
                    rows.append(
                        event_row(rec.event, rec.customer_id, m.partition() or 0, m.offset() or 0)
                    )
        elif table == "failed_events":
            rows = [
                failed_row(m.value() or b"", m.headers(), m.partition() or 0, m.offset() or 0)
                for m in msgs
            ]
        elif table == "segment_changes":
            rows = [
                change_row(_change.decode(m.value() or b"{}"), m.partition() or 0, m.offset() or 0)
                for m in msgs
            ]
        elif table == "profile_snapshots":
            rows = [snapshot_row(_snapshot.decode(m.value() or b"{}")) for m in msgs if m.value()]
        else:
            for m in msgs:
                d = _decision.decode(m.value() or b"{}")
                if d.action == "merged" and d.absorbed:
                    rows.append([d.absorbed, d.customer_id, d.at, d.event_id])
        return rows

    def insert(
        self,
        table: str,
        columns: list[str],
        rows: list[list[Any]],
        token: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        delay = 0.2
        while True:
            try:
                start = time.perf_counter()
                with self.lock:
                    self.client.insert(
                        table,
                        rows,
                        column_names=columns,
                        settings={
                            "insert_deduplication_token": token,
                            "deduplicate_blocks_in_dependent_materialized_views": 1,
                        },
                    )
                SINK_SECONDS.labels("clickhouse").observe(time.perf_counter() - start)
                EVENTS_OUT.labels(f"clickhouse:{table}").inc(len(rows))
                return
            except Exception as exc:  # ClickHouse down or busy: keep the batch, retry
                log.warning(
                    "clickhouse insert failed, retrying",
                    table=table,
                    error=str(exc)[:300],
                    retry_in=delay,
                )
                sleep(delay)
                delay = min(delay * 2, 10.0)

    def flush(self, by_tp: dict[TP, list[Message]]) -> int:
        if not by_tp:
            return 0
        ranges = {tp: (msgs[0].offset() or 0, msgs[-1].offset() or 0) for tp, msgs in by_tp.items()}
        self._save_intent({**self.intent, **ranges})
        written = 0
        for (topic, partition), msgs in sorted(by_tp.items()):
            table, columns = self.tables[topic]
            rows = self.rows_for(topic, msgs)
            if rows:
                first, last = ranges[(topic, partition)]
                self.insert(table, columns, rows, f"{topic}:{partition}:{first}-{last}")
                written += len(rows)
        self.consumer.commit(
            offsets=[TopicPartition(t, p, last + 1) for (t, p), (_f, last) in ranges.items()],
            asynchronous=False,
        )
        for tp in ranges:
            self.intent.pop(tp, None)
        self._save_intent(self.intent)
        self.inserted += written
        return written

    def run(self, stop: threading.Event, max_rows: int = 10_000, max_wait: float = 1.0) -> None:
        self.consumer.subscribe(list(self.tables))
        try:
            while not stop.is_set():
                self.flush(self.collect(max_rows, max_wait))
        finally:
            self.consumer.close()


def sink_main(
    settings: Settings, client: Client, stop: threading.Event, serve_sql: bool = True
) -> None:
    """Run the sink (and, for the embedded store, the SQL endpoint other processes use)."""
    from pipeline.sinks.clickhouse.query_server import serve

    sink = ClickHouseSink(settings, client)
    server = serve(settings, client, sink.lock) if serve_sql else None
    try:
        sink.run(stop, settings.clickhouse_batch, settings.clickhouse_batch_ms / 1000)
    finally:
        if server is not None:
            server.shutdown()


def intent_file(settings: Settings) -> Path:
    return settings.data_dir / "sinks" / f"{settings.topic_prefix}clickhouse-intent.json"
