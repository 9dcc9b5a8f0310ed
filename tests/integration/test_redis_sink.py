"""The Redis profile sink's guard against the real Redis: newer means (events, version)."""

from __future__ import annotations

import asyncio

import msgspec

from pipeline.config import Settings
from pipeline.sinks.redis_profiles import FORGOTTEN, RedisProfileSink
from pipeline.stores.redis_client import async_redis, sync_redis
from pipeline.transforms.profile import Audience, Profile
from pipeline.wire.keys import RedisKeys


def write(settings: Settings, *profiles: Profile) -> None:
    async def go() -> None:
        client = async_redis(settings)
        sink = RedisProfileSink(client, settings.topic_prefix)
        for p in profiles:
            sink.add(p)
            await sink.flush()
        await client.aclose()

    asyncio.run(go())


def stored(settings: Settings, cid: str) -> dict[str, bytes]:
    r = sync_redis(settings)
    return {
        k.decode(): v for k, v in r.hgetall(RedisKeys(settings.topic_prefix).profile(cid)).items()
    }


def events_of(settings: Settings, cid: str) -> int:
    return int(msgspec.json.decode(stored(settings, cid)["json"])["events"])


def test_more_events_win_even_with_a_lower_version(settings: Settings):
    """After a restart, derived changes can bump versions differently for the same history."""
    seg = Audience(segments={"vip": 1})
    stale = Profile(customer_id="c1", events=26, version=28, audience=seg)
    write(settings, stale)
    write(settings, Profile(customer_id="c1", events=27, version=28))
    assert events_of(settings, "c1") == 27
    r = sync_redis(settings)
    assert (
        r.zscore(RedisKeys(settings.topic_prefix).segment_of("vip", "c1"), "c1") is None
    )  # left with the write
    write(settings, Profile(customer_id="c1", events=26, version=40, audience=seg))  # stale
    assert events_of(settings, "c1") == 27
    assert r.zscore(RedisKeys(settings.topic_prefix).segment_of("vip", "c1"), "c1") is None
    write(settings, Profile(customer_id="c1", events=27, version=29, audience=seg))
    assert r.zscore(RedisKeys(settings.topic_prefix).segment_of("vip", "c1"), "c1") == 1.0


def test_tombstones_and_erasure_are_final(settings: Settings):
    write(settings, Profile(customer_id="c2", events=5, version=5))
    write(settings, Profile(customer_id="c2", events=5, version=6, merged_into="c3"))
    assert stored(settings, "c2")["m"] == b"c3" and "json" not in stored(settings, "c2")
    write(settings, Profile(customer_id="c2", events=5, version=5))  # a late live write
    assert "json" not in stored(settings, "c2")
    write(settings, Profile(customer_id="c2", merged_into=FORGOTTEN))
    write(settings, Profile(customer_id="c2", events=10**6, version=10**6))
    assert stored(settings, "c2")["m"] == FORGOTTEN.encode()
