"""Reading profiles back from Redis and comparing them to a reference, for integration tests."""

from __future__ import annotations

import msgspec
import redis

from pipeline.config import Settings
from pipeline.transforms.profile import Profile
from pipeline.wire.keys import RedisKeys

# Order-independent fields that must match exactly. Not compared: customer_id (which
# customer survives a merge depends on arrival order), version and merges (how many
# writes and merges it took), seen (the dedupe window).
COMPARED = (
    "events",
    "orders",
    "revenue_cents",
    "page_views",
    "cart_adds",
    "cart_cents",
    "email",
    "support",
    "consent",
    "points_earned",
    "points_redeemed",
    "categories",
    "stores",
    "product_views",
)


def comparable(p: Profile) -> dict:
    doc = msgspec.to_builtins(p)
    out = {k: doc.get(k) for k in COMPARED}
    out["identifiers"] = {k: sorted(v) for k, v in p.identifiers.items()}
    out["sessions"] = len(p.sessions)
    out["traits"] = {k: v.value for k, v in p.traits.items()}
    return out


def stored_profiles(settings: Settings, prefix: str) -> dict[str, Profile]:
    """Live profiles under a Redis prefix (tombstones of absorbed customers skipped)."""
    r = redis.Redis.from_url(settings.redis_url)
    decoder = msgspec.json.Decoder(Profile)
    out = {}
    for key in r.scan_iter(RedisKeys(prefix).profiles(), count=1000):
        raw = r.hget(key, "json")
        if raw:
            p = decoder.decode(raw)
            out[p.customer_id] = p
    return out


def event_total(settings: Settings, prefix: str) -> int:
    return sum(p.events for p in stored_profiles(settings, prefix).values())


def by_identifier(profiles: dict[str, Profile]) -> dict[tuple[str, str], str]:
    return {
        (k, v): cid for cid, p in profiles.items() for k, vs in p.identifiers.items() for v in vs
    }
