"""Remove what benchmark runs leave behind: their fresh topics, Redis keys and embedded stores.

Every benchmark works under its own ``bench<hex>.`` topic and Redis prefix (see
``pipeline.bench.worker._fresh``). Left in place, a few runs leave hundreds of topics on
the broker, which slows every later run's metadata and group work and made throughput
numbers drift between runs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException

from pipeline.config import Settings
from pipeline.kafka.topics import admin
from pipeline.stores.redis_client import sync_redis

BENCH_PREFIX = "bench"


def bench_stores(settings: Settings) -> Path:
    """Where benchmarks put their embedded ClickHouse stores, one directory per run."""
    return settings.data_dir / "bench-clickhouse"


def drop_bench_data(settings: Settings) -> dict[str, int]:
    """Delete topics, Redis keys and local state of benchmark runs; returns the counts."""
    client = admin(settings)
    topics = [t for t in client.list_topics(timeout=30).topics if t.startswith(BENCH_PREFIX)]
    pending = list(topics)
    for attempt in range(5):  # a topic still being created can refuse deletion for a moment
        if not pending:
            break
        failed: dict[str, KafkaException] = {}
        for name, future in client.delete_topics(pending, operation_timeout=60).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # gone already
                    failed[name] = exc
        pending = list(failed)
        if pending and attempt == 4:
            raise next(iter(failed.values()))
        time.sleep(1.0 if pending else 0)
    r = sync_redis(settings)
    keys = 0
    pipe = r.pipeline(transaction=False)  # one key per command: fine on a Redis Cluster too
    for key in r.scan_iter(f"{BENCH_PREFIX}*", count=5000):
        pipe.unlink(key)
        keys += 1
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    stores = sorted(bench_stores(settings).glob(f"{BENCH_PREFIX}*"))
    # The workers' local tables and model checkpoints and the sinks' intent files of
    # benchmark groups (they would also list every past run in `crm status`).
    local = [
        path
        for folder in ("faust", "models", "sinks")
        for path in sorted((settings.data_dir / folder).glob(f"{BENCH_PREFIX}*"))
    ]
    for path in [*stores, *local]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return {
        "topics": len(topics),
        "redis_keys": keys,
        "clickhouse_stores": len(stores),
        "local_state": len(local),
    }
