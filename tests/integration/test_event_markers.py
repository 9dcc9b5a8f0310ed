"""Per-event markers in the real Redis: bounded by the window, deduplicating inside it.

The identity stage's assignments (which event went to which customer) are fields of
hashes per time generation (``MarkerWindow``); a clock the test moves stands for the
processing time, Redis expires the hashes by its own.
"""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis

from pipeline.config import Settings
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.stores.redis_client import async_redis, sync_redis
from pipeline.transforms.identity import Rules
from pipeline.wire.keys import MarkerWindow, RedisKeys

WINDOW = MarkerWindow(600, rate=40)  # generations of 150 s
N = 6400


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def marker_ttls(r: aioredis.Redis, pattern: str) -> list[int]:
    return [await r.ttl(k) async for k in r.scan_iter(match=pattern, count=1000)]


def test_assignments_expire_with_the_window_and_replay_inside_it(settings: Settings) -> None:
    asyncio.run(assignments_expire_with_the_window_and_replay_inside_it(settings))


async def assignments_expire_with_the_window_and_replay_inside_it(settings: Settings) -> None:
    r = async_redis(settings)
    clock, prefix = Clock(), settings.topic_prefix
    graph = RedisIdentityGraph(r, prefix, Rules(), WINDOW, clock)
    events = [
        ("e1", {"anonymous_id": "a1"}),
        ("e2", {"user_id": "u1"}),
        ("e3", {"user_id": "u1", "anonymous_id": "a1"}),  # merges a1's customer into u1's
        *((f"f{i}", {"user_id": f"u{i % 7}"}) for i in range(200)),
    ]
    first = await graph.resolve_batch(events)
    assert first[2].decision and [m for m, _ in first[2].decision.merges] == [first[0].customer_id]
    ttls = await marker_ttls(r, f"{RedisKeys(prefix).event_markers_head}*")
    assert ttls and all(0 < t <= WINDOW.window_s + WINDOW.generation_s for t in ttls)
    merges_key = RedisKeys(prefix).event_merges("e3")
    assert 0 < await r.ttl(merges_key) <= WINDOW.window_s + WINDOW.generation_s

    # A client retry or a worker replay anywhere inside the window goes where it went first
    # and re-sends its merges, across generations.
    for later in (1, WINDOW.generation_s, WINDOW.window_s - 1):
        clock.now = first_now = time.time() + later
        again = await graph.resolve_batch(events)
        assert all(a.replayed for a in again)
        assert [a.customer_id for a in again] == [f.customer_id for f in first]
        assert again[2].replayed_merges == [first[0].customer_id]
    # Past the window (and its generation) the marker is not read any more: the event is
    # resolved afresh, still to the customer its identifiers belong to; its profile's own
    # dedupe buckets drop it.
    clock.now = first_now + WINDOW.window_s + 2 * WINDOW.generation_s
    late = await graph.resolve_batch(events[1:3])
    assert not any(a.replayed for a in late)
    assert [a.customer_id for a in late] == [first[2].customer_id] * 2
    await r.aclose()


def test_a_marker_costs_under_40_bytes_of_redis(settings: Settings) -> None:
    """MEMORY USAGE of the hashes over the markers they hold (hashes filled as at ``rate``)."""
    asyncio.run(write_markers(settings))
    prefix = settings.topic_prefix
    pattern = f"{RedisKeys(prefix).event_markers_head}*"
    client: redis.Redis = sync_redis(settings)
    keys = list(client.scan_iter(match=pattern, count=1000))
    used = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
    markers = sum(client.hlen(k) for k in keys)
    assert markers == N + 10
    assert used / markers < 40, (used / markers, len(keys))


async def write_markers(settings: Settings) -> None:
    """N markers in one generation, the shards sized for N events a generation."""
    n, prefix, clock = N, settings.topic_prefix, Clock()
    window = MarkerWindow(600, rate=n // 150)  # ~64 markers a hash
    r = async_redis(settings)
    graph = RedisIdentityGraph(r, prefix, Rules(), window, clock)
    await graph.resolve_batch([(f"s{i}", {"user_id": f"u{i}"}) for i in range(10)])
    for i in range(0, n, 1000):
        await graph.resolve_batch(
            [(f"e{j}", {"user_id": f"u{j % 10}"}) for j in range(i, min(i + 1000, n))]
        )
    await r.aclose()
