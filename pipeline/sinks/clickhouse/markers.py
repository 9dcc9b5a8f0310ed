"""Redis markers that recognise an event id already written from another Kafka position."""

from __future__ import annotations

import redis

from pipeline.stores.redis_client import is_cluster
from pipeline.wire.keys import RedisKeys, bucket

SEEN_TTL_S = 7 * 24 * 3600
CHUNK = 5000  # event ids per script call: other Redis clients run between chunks

# SET NX GET (Redis >= 7.0): nil when this call stored the position, else the stored one.
_MARK = """
local dup = {}
local ttl = ARGV[#KEYS + 1]
for i = 1, #KEYS do
  local old = redis.call('SET', KEYS[i], ARGV[i], 'NX', 'GET', 'EX', ttl)
  if old and old ~= ARGV[i] then dup[#dup + 1] = i end
end
return dup
"""


class SeenMarkers:
    """``RedisKeys.clickhouse_seen(event id)`` holds the position (``partition:offset``) that
    wrote it.

    A retried record comes back at its own position and is never taken for a copy.
    One script call per key bucket (one Redis Cluster slot) and ``CHUNK`` records, all
    calls in one round trip.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int = SEEN_TTL_S) -> None:
        self.client, self.ttl_s = client, ttl_s
        self.keys = RedisKeys(prefix)  # the name has one owner
        self._mark = client.register_script(_MARK)

    def duplicates(self, records: list[tuple[str, str]]) -> set[str]:
        """Positions of ``(event id, position)`` records whose id another position wrote."""
        if not records:
            return set()
        pipe = self.client.pipeline(transaction=False)
        groups: dict[str, list[tuple[str, str]]] = {}
        for record in records:
            groups.setdefault(bucket(record[0]), []).append(record)
        chunks = [g[i : i + CHUNK] for g in groups.values() for i in range(0, len(g), CHUNK)]
        cluster = is_cluster(self.client)  # a cluster client cannot pipeline scripts
        results = []
        for chunk in chunks:
            keys = [self.keys.clickhouse_seen(event_id) for event_id, _ in chunk]
            args = [position for _, position in chunk] + [self.ttl_s]
            if cluster:
                results.append(self._mark(keys=keys, args=args))
            else:
                self._mark(keys=keys, args=args, client=pipe)
        if not cluster:
            results = pipe.execute()
        return {chunk[i - 1][1] for chunk, dup in zip(chunks, results, strict=True) for i in dup}
