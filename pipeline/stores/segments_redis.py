"""Segment state in Redis: members per segment, due timers and the shared event-time clock.

Membership sets are written by the profile sink's script (see
``sinks/redis_profiles.py``); this module reads them and runs the timer sweep.
Timers are claimed with a lease: a claimed customer is pushed ``lease_ms`` of
event time into the future, so if the tick it triggers is lost the timer fires
again, and the tick's own evaluation writes the next real due time.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from pipeline.wire.keys import BUCKETS, RedisKeys

CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, cid in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], cid) end
return due
"""
ADVANCE_CLOCK = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(ARGV[1])
if t > cur then redis.call('SET', KEYS[1], ARGV[1]); return t end
return cur
"""
LEASE_MS = 60_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SegmentTimers:
    """Due timers live per customer bucket (with the profiles that set them); a sweep
    claims from every bucket. The clock is one key of its own."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.keys = RedisKeys(prefix)
        self.clock_key = self.keys.segments_clock
        self._claim = client.register_script(CLAIM_DUE)
        self._advance = client.register_script(ADVANCE_CLOCK)

    async def advance_clock(self, t: int) -> int:
        """The event-time clock shared by all workers: the newest time any of them saw."""
        return int(await self._advance(keys=[self.clock_key], args=[max(0, t)]))

    async def claim_due(self, now: int, limit: int = 2000) -> list[str]:
        out: list[str] = []
        for b in BUCKETS:
            if len(out) >= limit:
                break
            key = self.keys.segments_due(b)
            due = await self._claim(keys=[key], args=[now, limit - len(out), now + LEASE_MS])
            out += [_text(c) for c in due]
        return out


class SegmentReader:
    """Synchronous reads for the CLI and tests; a segment is the union of its buckets."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r, self.keys = client, RedisKeys(prefix)

    def count(self, name: str) -> int:
        return sum(int(self.r.zcard(self.keys.segment(name, b))) for b in BUCKETS)

    def members(self, name: str, limit: int = 50, offset: int = 0) -> list[tuple[str, int]]:
        """Members by time entered (then id), ``limit`` from ``offset``."""
        rows: list[tuple[str, int]] = []
        for b in BUCKETS:
            found: Any = self.r.zrange(
                self.keys.segment(name, b), 0, offset + limit - 1, withscores=True
            )
            rows += [(_text(m), int(score)) for m, score in found]
        rows.sort(key=lambda r: (r[1], r[0]))
        return rows[offset : offset + limit]

    def is_member(self, name: str, customer_id: str) -> bool:
        return self.r.zscore(self.keys.segment_of(name, customer_id), customer_id) is not None

    def pending_timers(self) -> int:
        return sum(int(self.r.zcard(self.keys.segments_due(b))) for b in BUCKETS)

    def clock(self) -> int:
        raw = self.r.get(self.keys.segments_clock)
        return int(raw) if raw else 0
