"""Profiles in Redis for millisecond lookups, guarded by (events, version).

Each profile is a hash ``profile:<customer id>`` with ``v`` (version),
``json`` and ``s`` (its segments). Segment membership lives in sorted sets
``segment:<name>`` (score: event time entered) changed by the same script, so a
set never disagrees with the profile version that put the customer there; the
next time a segment timer is due sits in the sorted set ``segments:due``. All three
are per customer bucket (``pipeline.wire.keys``): a script call writes one bucket,
one slot of a Redis Cluster.
A Lua script replaces the profile only when it is newer: more events, or as
many events and a higher version. Events come first because a customer's event
count only grows, whoever computes it, while the version also counts derived
changes (segments evaluated at a different clock after a restart can bump it a
different number of times), so two re-derivations of the same history may
disagree on the version but never on the events. A replayed or reordered write
never rolls a profile back. An absorbed (or
forgotten) customer becomes a tombstone: ``v`` and ``m`` (the survivor) without
``json``. Deleting the key instead would let a late write from a worker that
lost the partition in a rebalance resurrect the old profile; the tombstone's
version stops it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis

from pipeline.metrics import EVENTS_OUT, SINK_SECONDS
from pipeline.sinks.base import Sink
from pipeline.stores.redis_client import is_cluster
from pipeline.transforms.profile import Profile
from pipeline.wire.keys import FORGOTTEN, RedisKeys, bucket

WRITE_IF_NEWER = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'e')
local v, e = tonumber(ARGV[1]), tonumber(ARGV[9])
local cmp = 1
if cur[1] then
  local cv, ce = tonumber(cur[1]), tonumber(cur[2] or '-1')
  if ce > e or (ce == e and cv > v) then return 0 end
  if ce == e and cv == v then cmp = 0 end
end
if ARGV[6] == '' then
  redis.call('ZREM', KEYS[2], ARGV[7])
elseif ARGV[6] ~= '-' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[7])
end
if cmp == 0 then return 0 end
if ARGV[5] ~= '-' then
  local new = cjson.decode(ARGV[5])
  local old = redis.call('HGET', KEYS[1], 's')
  if old then
    for name, _ in pairs(cjson.decode(old)) do
      if new[name] == nil then redis.call('ZREM', ARGV[8] .. name, ARGV[7]) end
    end
  end
  for name, t in pairs(new) do redis.call('ZADD', ARGV[8] .. name, t, ARGV[7]) end
  redis.call('HSET', KEYS[1], 's', ARGV[5])
end
if ARGV[4] ~= '' then
  redis.call('HDEL', KEYS[1], 'json')
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', ARGV[9], 'm', ARGV[4], 't', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', ARGV[9], 'json', ARGV[2], 't', ARGV[3])
end
return 1
"""
# The same guard for a whole batch in one command: redis-py spends more time packing
# a command than Redis spends running it, so one EVALSHA per profile dominated a flush.
WRITE_MANY = (
    "local function write_one(KEYS, ARGV)\n"
    + WRITE_IF_NEWER
    + """end
local n = 0
for i = 0, #KEYS / 2 - 1 do
  local args = {}
  for j = 1, 9 do args[j] = ARGV[i * 9 + j] end
  n = n + write_one({KEYS[i * 2 + 1], KEYS[i * 2 + 2]}, args)
end
return n
"""
)
WRITE_CHUNK = 200  # profiles per script call: Redis stays responsive to lookups meanwhile
FORGOTTEN_VERSION = 2**53  # above any real version: nothing overwrites an erasure

_encoder = msgspec.json.Encoder()


def public_json(profile: Profile) -> bytes:
    """The stored form: everything but the dedupe window and the re-send buffer."""
    audience = profile.audience
    if audience is not None and audience.changes:
        audience = msgspec.structs.replace(audience, changes=[])
    return _encoder.encode(
        msgspec.structs.replace(profile, seen={}, seen_days=[], audience=audience)
    )


Args = list[int | str | bytes]


def write_args(
    prefix: str, profile: Profile, now: str, audience: bool = True
) -> tuple[list[str], Args]:
    """Keys and arguments of WRITE_IF_NEWER for a profile or a tombstone.

    ``audience=False`` (the backfill, which derives no segments) leaves segment
    sets and timers as they are.
    """
    cid = profile.customer_id
    k = RedisKeys(prefix)
    b = bucket(cid)
    keys = [k.profile(cid), k.segments_due(b)]  # one slot: {p<b>}, with the segment sets
    tail: Args = [cid, k.segments_prefix(b)]
    if profile.merged_into:  # tombstone: survivor (or erasure), no content, no segments
        forgotten = profile.merged_into == FORGOTTEN
        version = FORGOTTEN_VERSION if forgotten else profile.version
        events = FORGOTTEN_VERSION if forgotten else profile.events
        return keys, [version, b"", now, profile.merged_into, b"{}", "", *tail, events]
    a = profile.audience
    if not audience:
        segments: bytes | str = "-"
        due: int | str = "-"
    else:
        segments = _encoder.encode(a.segments if a is not None else {})
        due = a.due if a is not None and a.due is not None else ""
    return keys, [
        profile.version,
        public_json(profile),
        now,
        "",
        segments,
        due,
        *tail,
        profile.events,
    ]


def by_bucket(profiles: Iterable[Profile], chunk: int = WRITE_CHUNK) -> list[list[Profile]]:
    """Profiles grouped by key bucket (one Redis Cluster slot each), in chunks."""
    groups: dict[str, list[Profile]] = {}
    for p in profiles:
        groups.setdefault(bucket(p.customer_id), []).append(p)
    return [g[i : i + chunk] for _, g in sorted(groups.items()) for i in range(0, len(g), chunk)]


class RedisProfileSink(Sink[Profile]):
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self._pending: dict[str, Profile] = {}
        self._script = client.register_script(WRITE_MANY)
        self.cluster = is_cluster(client)

    def key(self, customer_id: str) -> str:
        return RedisKeys(self.prefix).profile(customer_id)

    def add(self, item: Profile) -> None:
        self._pending[item.customer_id] = item  # last state of a batch wins

    async def flush(self) -> int:
        if not self._pending:
            return 0
        start = time.perf_counter()
        pending = self._pending  # kept until written: a flush that failed can run again
        now = str(int(time.time() * 1000))
        calls: list[tuple[list[str], Args]] = []
        for chunk in by_bucket(pending.values()):  # a script call touches one slot
            keys: list[str] = []
            args: Args = []
            for profile in chunk:
                k, a = write_args(self.prefix, profile, now)
                keys += k
                args += a
            calls.append((keys, args))
        if self.cluster:  # a cluster client cannot pipeline scripts: one call per bucket
            await asyncio.gather(*(self._script(keys=k, args=a) for k, a in calls))
        else:
            pipe = self.r.pipeline(transaction=False)
            for k, a in calls:
                await self._script(keys=k, args=a, client=pipe)
            await pipe.execute()
        self._pending = {}
        SINK_SECONDS.labels("redis").observe(time.perf_counter() - start)
        EVENTS_OUT.labels("redis", "profile").inc(len(pending))
        return len(pending)
