"""Benchmark run tags, and removal of what benchmark runs leave behind.

Every benchmark works under its own tag (``new_tag``): ``bench`` + creation time + random
suffix, used as topic prefix, Redis prefix and worker group (see
``pipeline.bench.worker._fresh``). Left in place, runs leave hundreds of topics on the
broker (slowing every later run's metadata and group work: throughput numbers drifted),
millions of Redis keys, RocksDB tables, model checkpoints and embedded stores.

Only names that are exactly such a tag are touched, never a deployment's own prefix, and
a tag younger than ``STALE_AFTER_S`` belongs to a run that may still be going: ``crm bench``
drops stale tags before it starts and its own tags when it ends.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Collection
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.config import Settings
from pipeline.kafka.topics import admin
from pipeline.stores.redis_client import sync_redis

# bench<8 hex: unix seconds><4 hex>; the 6-hex tags of earlier versions count as stale.
TAG = re.compile(r"bench(?:(?P<at>[0-9a-f]{8})[0-9a-f]{4}|[0-9a-f]{6})")
STALE_AFTER_S = 6 * 3600  # longer than any benchmark run
created: set[str] = set()  # tags this process made


def new_tag() -> str:
    tag = f"bench{int(time.time()):08x}{uuid.uuid4().hex[:4]}"
    created.add(tag)
    return tag


def bench_stores(settings: Settings) -> Path:
    """Where benchmarks put their embedded ClickHouse stores, one directory per run."""
    return settings.data_dir / "bench-clickhouse"


def _tag_of(name: str) -> str | None:
    """The benchmark tag ``name`` is under (``<tag>``, ``<tag>.`` or ``<tag>-...``), if any."""
    m = TAG.match(name)
    if m is None or (len(name) > m.end() and name[m.end()] not in ".-"):
        return None
    return m.group(0)


def _droppable(tag: str | None, only: Collection[str] | None, now: float) -> bool:
    if tag is None:
        return False
    if only is not None:
        return tag in only
    m = TAG.match(tag)
    at = m.group("at") if m else None
    return at is None or now - int(at, 16) > STALE_AFTER_S


def drop_bench_data(settings: Settings, only: Collection[str] | None = None) -> dict[str, int]:
    """Delete topics, Redis keys and local state of benchmark runs; returns the counts.

    ``only``: these tags (a run's own); otherwise every tag older than ``STALE_AFTER_S``.
    """
    own = {settings.topic_prefix.rstrip("."), settings.redis_prefix.rstrip("."), settings.worker_id}
    if any(_tag_of(p) for p in own if p):
        raise ValueError(f"not dropping benchmark data: this deployment's prefix is a tag: {own}")
    now = time.time()

    def drop(name: str) -> bool:
        return _droppable(_tag_of(name), only, now)

    client = admin(settings)
    topics = [t for t in client.list_topics(timeout=30).topics if drop(t)]
    _delete_topics(client, topics)
    r = sync_redis(settings)
    keys = 0
    pipe = r.pipeline(transaction=False)  # one key per command: fine on a Redis Cluster too
    for key in r.scan_iter("bench*", count=5000):
        if drop(key.decode(errors="replace") if isinstance(key, bytes) else str(key)):
            pipe.unlink(key)
            keys += 1
            if len(pipe) >= 5000:
                pipe.execute()
    pipe.execute()
    stores = [p for p in sorted(bench_stores(settings).glob("bench*")) if drop(p.name)]
    # The workers' local tables and model checkpoints and the sinks' intent files of
    # benchmark groups (they would also list every past run in `crm status`).
    local = [
        path
        for folder in ("faust", "models", "sinks")
        for path in sorted((settings.data_dir / folder).glob("bench*"))
        if drop(path.name)
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


def _delete_topics(client: AdminClient, topics: list[str]) -> None:
    pending = list(topics)
    for attempt in range(5):  # a topic still being created can refuse deletion for a moment
        if not pending:
            return
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
