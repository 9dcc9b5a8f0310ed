"""`crm bench` drops its own topics and Redis keys, and nothing else (real Kafka and Redis)."""

from __future__ import annotations

import time
import uuid

from pipeline.bench.cleanup import drop_bench_data
from pipeline.config import Settings
from pipeline.kafka.topics import admin, ensure_topics
from pipeline.stores.redis_client import sync_redis


def test_drop_bench_data_removes_bench_topics_and_keys_only(settings: Settings) -> None:
    bench = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}."})
    created = ensure_topics(bench)
    r = sync_redis(settings)
    bench_keys = [f"{bench.topic_prefix}{{g}}:id:user_id:u{i}" for i in range(3)]
    for key in bench_keys:
        r.set(key, "c_1")
    r.set(f"{settings.topic_prefix}keep", "1")

    dropped = drop_bench_data(settings)

    assert dropped["topics"] >= len(created) and dropped["redis_keys"] >= len(bench_keys)
    assert not any(r.exists(k) for k in bench_keys)
    assert r.get(f"{settings.topic_prefix}keep") == b"1"
    deadline = time.monotonic() + 30  # topic deletion completes asynchronously on the broker
    while True:
        names = set(admin(settings).list_topics(timeout=10).topics)
        if not names & set(created) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not names & set(created)
    assert settings.topic("events") in names  # the test's own topics stay
