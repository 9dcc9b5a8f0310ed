"""Redis markers that recognise an event id already written from another Kafka position.

A marker is a field (the event id's digest) of a hash per time generation and shard
(``MarkerWindow``), remembered at least ``CRM_DEDUPE_WINDOW_S`` and at most 5/4 of it: a
copy that arrives later than that is not recognised here. Copies from ``crm replay``
(``replayed``) are checked against the ``events`` table by the sink instead, and a copy of
an event at the same customer and event time collapses in the ``ReplacingMergeTree``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from pipeline.config import get_settings
from pipeline.stores.redis_client import is_cluster
from pipeline.wire.keys import LUA_MARKERS, MarkerWindow, RedisKeys, bucket

CHUNK = 5000  # event ids per script call: other Redis clients run between chunks

# KEYS: one hash of the bucket (routes the call); ARGV: the live generations
# (LUA_MARKERS), the newest one's expiry (unix s), then (marker, position) per record.
# Stores the position of a record whose field no generation holds; returns the records
# (1-based) whose field holds another position.
_MARK = (
    LUA_MARKERS
    + """
local hashes, i = marker_hashes()
local expire_at, dup, written = ARGV[i], {}, {}
for r = 0, (#ARGV - i) / 2 - 1 do
  local arg, pos = ARGV[i + 1 + 2 * r], ARGV[i + 2 + 2 * r]
  local old = find_marker(hashes, arg)
  if not old then
    local field, shard = split_marker(arg)
    local key = hashes[1] .. shard
    redis.call('HSET', key, field, pos)
    if not written[key] then
      redis.call('EXPIREAT', key, expire_at)
      written[key] = true
    end
  elseif old ~= pos then
    dup[#dup + 1] = r + 1
  end
end
return dup
"""
)


def pack_position(position: str) -> str:
    """``partition:offset`` as one integer, which Redis keeps in 8 bytes (text: 12 and more)."""
    partition, sep, offset = position.partition(":")
    digits = sep and f"{partition}{offset}".isascii() and partition.isdigit() and offset.isdigit()
    if digits and int(partition) < 1 << 15 and int(offset) < 1 << 48:
        return str(int(partition) << 48 | int(offset))
    return "=" + position


class SeenMarkers:
    """The marker of an event id holds the position (``partition:offset``) that wrote it.

    A retried record comes back at its own position and is never taken for a copy.
    One script call per key bucket (one Redis Cluster slot) and ``CHUNK`` records, all
    calls in one round trip.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        window: MarkerWindow | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.clock = client, clock
        if window is None:
            settings = get_settings()
            window = MarkerWindow(settings.dedupe_window_s, settings.dedupe_rate)
        self.window = window
        self.shards = window.shards(parts=16)  # in each of the 16 event-id buckets
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
        now = self.clock()
        start = self.window.starts(now)[0]
        expire_at = self.window.expire_at(start)
        results = []
        for chunk in chunks:
            head = self.keys.clickhouse_seen_head(chunk[0][0])
            args = self.window.hashes(head, now)
            args.append(expire_at)
            for event_id, position in chunk:
                args += [self.window.marker_arg(event_id, self.shards), pack_position(position)]
            keys = [self.keys.clickhouse_seen(chunk[0][0], start, 0)]
            if cluster:
                results.append(self._mark(keys=keys, args=args))
            else:
                self._mark(keys=keys, args=args, client=pipe)
        if not cluster:
            results = pipe.execute()
        return {chunk[i - 1][1] for chunk, dup in zip(chunks, results, strict=True) for i in dup}
