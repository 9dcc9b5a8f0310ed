"""Reading profiles back from Redis and comparing them to a reference, for integration tests."""

from __future__ import annotations

import time

import msgspec
import redis

from pipeline.bench.workload import simulated_records
from pipeline.config import Settings
from pipeline.events import Event
from pipeline.kafka.inspect import group_lag_by_partition, read_range
from pipeline.kafka.producer import Record
from pipeline.rule_files import load_loyalty
from pipeline.transforms.fold import fold
from pipeline.transforms.identity import MemoryGraph, Rules
from pipeline.transforms.profile import Profile
from pipeline.wire.keys import RedisKeys
from tests.integration.conftest import wait_until

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


def workload(settings: Settings, customers: int, touches: int) -> list[list[Record]]:
    """Realistic events from the simulator, already validated and enriched, in chunks."""
    records = simulated_records(settings, customers, touches)
    return [records[i : i + 200] for i in range(0, len(records), 200)]


def reference_profiles(settings: Settings) -> list[Profile]:
    """A single careful pass over ``events`` with the same pure functions the workers use.

    The in-memory identity graph over every event in topic order, then a fold per
    customer (the fold skips an event id it has seen: a client's retry counts once).
    """
    graph = MemoryGraph(Rules())
    decoder = msgspec.json.Decoder(Event)
    assigned: list[tuple[str, Event]] = []
    for msg in read_range(settings, settings.topic("events")):
        event = decoder.decode(msg.value())
        d = graph.resolve(event.identities)
        assert d.customer_id is not None
        assigned.append((d.customer_id, event))
    by_customer: dict[str, Profile] = {}
    accrual = load_loyalty(settings.loyalty_rules).rules  # what the workers accrue points by
    for cid, event in assigned:
        survivor = graph.survivor(cid)
        by_customer[survivor] = fold(
            by_customer.get(survivor) or Profile(customer_id=survivor), event, accrual
        )
    return list(by_customer.values())


def diagnose(settings: Settings, prefix: str) -> str:
    """Which customers differ from the reference, with their Redis records (for a failure)."""
    r = redis.Redis.from_url(settings.redis_url)
    tombstones = sum(
        1
        for key in r.scan_iter(RedisKeys(prefix).profiles(), count=1000)
        if not r.hexists(key, "json")
    )
    stored = stored_profiles(settings, prefix)
    owner = by_identifier(stored)
    lines = []
    for exp in reference_profiles(settings):
        cids = {owner.get((k, v)) for k, vs in exp.identifiers.items() for v in vs}
        got = [stored[c] for c in cids if c]
        if len(got) != 1 or got[0].events != exp.events:
            lines.append(
                f"expected {exp.events} events for {sorted(exp.identifiers.items())}; got "
                + str([(g.customer_id, g.events, g.version, g.merges) for g in got])
                + (" (some identifiers unowned)" if None in cids else "")
            )
    return f"{len(lines)} customers differ: " + " | ".join(lines[:5]) + f"; tombstones {tombstones}"


def wait_settled(settings: Settings, prefix: str, total: int, group: str, timeout: float) -> None:
    """Wait until Redis profiles hold ``total`` events and nothing changed for 3 s.

    Not on the committed consumer lag: faust-streaming can stall its offset commits after
    a rebalance (faust-streaming/faust#312 and #707); a stalled commit only means a
    harmless replay after the next restart.
    """
    state = {"last": -1, "since": time.monotonic()}

    def check() -> tuple[bool, str]:
        now_total = event_total(settings, prefix)
        if now_total != state["last"]:
            state["last"], state["since"] = now_total, time.monotonic()
        settled = now_total == total and time.monotonic() - state["since"] > 3
        return settled, f"profiles hold {now_total} of {total} events"

    try:
        wait_until(check, timeout, "every event in a Redis profile, nothing changing")
    except AssertionError as exc:
        lag = group_lag_by_partition(settings, group, [settings.topic("events")])
        raise AssertionError(f"{exc}; lag {lag}; {diagnose(settings, prefix)}") from None


def assert_matches_reference(settings: Settings, prefix: str, total: int) -> None:
    """Every stored profile equals the single clean pass's, matched through identifiers."""
    expected = reference_profiles(settings)
    stored = stored_profiles(settings, prefix)
    assert sum(p.events for p in stored.values()) == sum(p.events for p in expected) == total
    owner = by_identifier(stored)
    mismatches = []
    for exp in expected:
        kind, values = next(iter(sorted(exp.identifiers.items())))
        got = stored[owner[(kind, values[0])]]
        if comparable(got) != comparable(exp):
            mismatches.append((comparable(got), comparable(exp)))
    assert not mismatches, f"{len(mismatches)} profiles differ, first: {mismatches[0]}"
    assert len(stored) == len(expected)
