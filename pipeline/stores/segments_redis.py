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

from pipeline.wire.keys import RedisKeys

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
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.keys = RedisKeys(prefix)
        self.due_key = self.keys.segments_due
        self.clock_key = self.keys.segments_clock
        self._claim = client.register_script(CLAIM_DUE)
        self._advance = client.register_script(ADVANCE_CLOCK)

    async def advance_clock(self, t: int) -> int:
        """The event-time clock shared by all workers: the newest time any of them saw."""
        return int(await self._advance(keys=[self.clock_key], args=[max(0, t)]))

    async def claim_due(self, now: int, limit: int = 2000) -> list[str]:
        due = await self._claim(keys=[self.due_key], args=[now, limit, now + LEASE_MS])
        return [_text(c) for c in due]


class SegmentReader:
    """Synchronous reads for the CLI and tests."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r, self.keys = client, RedisKeys(prefix)

    def count(self, name: str) -> int:
        return int(self.r.zcard(self.keys.segment(name)))

    def members(self, name: str, limit: int = 50, offset: int = 0) -> list[tuple[str, int]]:
        rows: Any = self.r.zrange(
            self.keys.segment(name), offset, offset + limit - 1, withscores=True
        )
        return [(_text(row[0]), int(row[1])) for row in rows]

    def is_member(self, name: str, customer_id: str) -> bool:
        return self.r.zscore(self.keys.segment(name), customer_id) is not None

    def pending_timers(self) -> int:
        return int(self.r.zcard(self.keys.segments_due))

    def clock(self) -> int:
        raw = self.r.get(self.keys.segments_clock)
        return int(raw) if raw else 0
