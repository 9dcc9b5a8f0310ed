"""The ClickHouse sink's duplicate markers against the real Redis (one script per chunk)."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.sinks.clickhouse.markers import CHUNK, SeenMarkers
from pipeline.stores.redis_client import sync_redis
from pipeline.wire.keys import MarkerWindow, RedisKeys


def test_a_copy_is_a_duplicate_a_retry_is_not(settings: Settings) -> None:
    client = sync_redis(settings)
    window = MarkerWindow(600, rate=100)
    markers = SeenMarkers(client, settings.topic_prefix, window)
    n = CHUNK * 2 + 7  # three script calls in one round trip
    first = [(f"e{i}", f"0:{i}") for i in range(n)]
    assert markers.duplicates(first) == set()
    assert markers.duplicates(first) == set()  # the same positions again: a retry
    copies = [(f"e{i}", f"1:{i}") for i in range(0, n, 1000)] + [("new", "1:99999")]
    assert markers.duplicates(copies) == {f"1:{i}" for i in range(0, n, 1000)}
    field, shard = window.marker("e5", markers.shards)
    start = window.starts(markers.clock())[0]
    key = RedisKeys(settings.topic_prefix).clickhouse_seen("e5", start, shard)
    assert client.hget(key, field) == str(5).encode()  # partition 0, offset 5: 0 << 48 | 5
    assert 0 < client.ttl(key) <= 600 + window.generation_s
    assert markers.duplicates([]) == set()
