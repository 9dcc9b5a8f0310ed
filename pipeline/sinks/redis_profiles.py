"""Profiles in Redis for millisecond lookups, guarded by version.

Each profile is a hash ``profile:<customer id>`` with ``v`` (version) and
``json``. A Lua script replaces it only when the incoming version is higher, so
a replayed or reordered write never rolls a profile back. An absorbed (or
forgotten) customer becomes a tombstone: ``v`` and ``m`` (the survivor) without
``json``. Deleting the key instead would let a late write from a worker that
lost the partition in a rebalance resurrect the old profile; the tombstone's
version stops it.
"""

from __future__ import annotations

import time

import msgspec
import redis.asyncio as aioredis

from pipeline.metrics import EVENTS_OUT, SINK_SECONDS
from pipeline.sinks.base import Sink
from pipeline.transforms.profile import Profile

WRITE_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
if ARGV[4] ~= '' then
  redis.call('HDEL', KEYS[1], 'json')
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', ARGV[4], 't', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'json', ARGV[2], 't', ARGV[3])
end
return 1
"""
FORGOTTEN = "(forgotten)"
FORGOTTEN_VERSION = 2**53  # above any real version: nothing overwrites an erasure

_encoder = msgspec.json.Encoder()


def public_json(profile: Profile) -> bytes:
    """The stored form: everything but the dedupe window."""
    return _encoder.encode(msgspec.structs.replace(profile, seen={}))


class RedisProfileSink(Sink[Profile]):
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self._pending: dict[str, Profile] = {}
        self._script = client.register_script(WRITE_IF_NEWER)

    def key(self, customer_id: str) -> str:
        return f"{self.prefix}profile:{customer_id}"

    def add(self, item: Profile) -> None:
        self._pending[item.customer_id] = item  # last state of a batch wins

    async def flush(self) -> int:
        if not self._pending:
            return 0
        start = time.perf_counter()
        pending, self._pending = self._pending, {}
        now = str(int(time.time() * 1000))
        pipe = self.r.pipeline(transaction=False)
        for cid, profile in pending.items():
            args: list[int | str | bytes]
            if profile.merged_into:  # tombstone: survivor (or erasure), no content
                forgotten = profile.merged_into == FORGOTTEN
                args = [
                    FORGOTTEN_VERSION if forgotten else profile.version,
                    b"",
                    now,
                    profile.merged_into,
                ]
            else:
                args = [profile.version, public_json(profile), now, ""]
            await self._script(keys=[self.key(cid)], args=args, client=pipe)
        await pipe.execute()
        SINK_SECONDS.labels("redis").observe(time.perf_counter() - start)
        EVENTS_OUT.labels("redis").inc(len(pending))
        return len(pending)
