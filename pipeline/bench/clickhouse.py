"""ClickHouse sink throughput: routed events pre-loaded into a fresh topic, rows/s stored."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from pipeline.bench.cleanup import bench_stores
from pipeline.bench.worker import _fresh
from pipeline.bench.workload import simulated_records
from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.events import Event
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.sinks.clickhouse.access import query
from pipeline.wire.records import RoutedEvent, encoder


def sink_throughput(settings: Settings, logs: Path, touches: int) -> dict[str, Any]:
    s, env = _fresh(settings)
    ch = f"chdb://{bench_stores(settings) / s.topic_prefix.rstrip('.')}"
    s = s.model_copy(update={"clickhouse_url": ch, "sql_port": settings.sql_port + 11})
    env = {**env, "CRM_CLICKHOUSE_URL": ch, "CRM_SQL_PORT": str(s.sql_port)}
    decoder = msgspec.json.Decoder(Event)
    records = []
    for rec in simulated_records(s, customers=5000, touches=touches):
        if rec.topic.endswith(".events"):
            event = decoder.decode(rec.value)
            cid = f"c{hash(rec.key) % 5000}"
            value = encoder.encode(RoutedEvent(customer_id=cid, event=event))
            records.append(Record(s.topic("events.by_customer"), cid.encode(), value))
    producer = ConfirmedProducer(s.kafka_bootstrap, ack_timeout_ms=60_000)
    for i in range(0, len(records), 5000):
        producer.send_sync(records[i : i + 5000], timeout=120)
    producer.close()
    with crm_process(["sink", "clickhouse"], None, logs / "bench-sink.log", env=env):
        start = None
        while True:
            try:
                # never open the store here: it would hold chdb's lock the sink needs
                n = int(query(s, "SELECT count() FROM events", open_store=False)["rows"][0][0])
            except Exception:
                n = 0
            if start is None and n > 0:
                start, first = time.monotonic(), n
            if n >= len(records):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - start if start else 0.0
    rows = len(records) - (first if start else 0)
    return {
        "rows": len(records),
        "seconds": round(elapsed, 2),
        "rows_per_second": round(rows / elapsed) if elapsed else None,
        "target_rows_per_second": 100_000,
    }
