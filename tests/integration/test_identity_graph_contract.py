"""The Redis identity graph and the in-memory one resolve the same streams to the same graph.

The Redis graph decides a batch's new identifiers together against one read and commits
them in one guarded script; when another worker changed what the batch read, it falls
back to one optimistic transaction per decision. Both paths must end where a sequential
pass over the in-memory graph (the backfill's) ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.stores.identity_redis import Op, RedisIdentityGraph, Resolution
from pipeline.transforms.identity import MemoryGraph, Rules
from pipeline.wire.keys import SEP, RedisKeys
from tests.strategies import identity_sets

RULES = Rules()


async def redis_state(r: aioredis.Redis, prefix: str) -> dict[str, Any]:
    """Owners, member sets and merge pointers as the in-memory graph holds them."""
    owners: dict[tuple[str, str], str] = {}
    members: dict[str, dict[str, set[str]]] = {}
    merged: dict[str, str] = {}
    graph = RedisKeys(prefix).graph  # every graph key starts with it
    async for raw in r.scan_iter(match=f"{graph}*", count=5000):
        key = raw.decode().removeprefix(graph)
        if key.startswith("id:"):
            _, kind, value = key.split(":", 2)
            owners[(kind, value)] = (await r.get(raw)).decode()
        elif key.endswith(":ids"):
            cid = key.removeprefix("cust:").removesuffix(":ids")
            for m in await r.smembers(raw):
                kind, _, value = m.decode().partition(SEP)
                members.setdefault(cid, {}).setdefault(kind, set()).add(value)
        elif key.endswith(":merged_into"):
            merged[key.removeprefix("cust:").removesuffix(":merged_into")] = (
                await r.get(raw)
            ).decode()
    return {"owners": owners, "members": members, "merged": merged}


def memory_state(g: MemoryGraph) -> dict[str, Any]:
    members = {
        c: {k: set(v) for k, v in ms.items() if v}
        for c, ms in g.members.items()
        if any(ms.values())
    }
    return {"owners": dict(g.owners), "members": members, "merged": dict(g.merged_into)}


async def resolve_in_batches(
    graph: RedisIdentityGraph, stream: Sequence[Mapping[str, str]], size: int
) -> list[Resolution]:
    items = [(f"e{i}", ids) for i, ids in enumerate(stream)]
    out: list[Resolution] = []
    for i in range(0, len(items), size):
        out += await graph.resolve_batch(items[i : i + size])
    return out


def survivor(merged: Mapping[str, str], cid: str | None) -> str | None:
    while cid in merged:
        cid = merged[cid]
    return cid


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(identity_sets, max_size=30), st.integers(min_value=1, max_value=12))
def test_batches_end_where_a_sequential_pass_ends(settings: Settings, stream, size):  # type: ignore[no-untyped-def]
    async def run() -> None:
        r = aioredis.Redis.from_url(settings.redis_url)
        prefix = f"contract{uuid.uuid4().hex[:8]}:"
        graph = RedisIdentityGraph(r, prefix, RULES)
        got = await resolve_in_batches(graph, stream, size)
        memory = MemoryGraph(RULES)
        want = [memory.resolve(ids).customer_id for ids in stream]
        state = await redis_state(r, prefix)
        assert state == memory_state(memory)
        # An event resolved from a batch's first read may name a customer that a decision
        # earlier in the same batch absorbed; the merge pointer leads to the same survivor.
        assert [survivor(state["merged"], g.customer_id) for g in got] == [
            survivor(state["merged"], w) for w in want
        ]
        # Replayed events go where they went the first time, and change nothing.
        again = await resolve_in_batches(graph, stream, size)
        assert [a.customer_id for a in again] == [g.customer_id for g in got]
        assert all(a.replayed for a in again if a.customer_id)
        assert await redis_state(r, prefix) == state
        await r.aclose()

    asyncio.run(run())


class Interrupted(RedisIdentityGraph):
    """Another worker's decision lands between this batch's read and its commit."""

    def __init__(self, *args: Any, intruder: Mapping[str, str]) -> None:
        super().__init__(*args)
        self.intruder: Mapping[str, str] | None = intruder
        self.commits: list[bool] = []

    async def _commit_ops(
        self, owners: Mapping[str, str], sets: Mapping[str, list[str]], ops: list[Op]
    ) -> bool:
        if self.intruder is not None:
            other = RedisIdentityGraph(self.r, self.prefix, self.rules)
            await other.resolve_one(self.intruder, "intruder")
            self.intruder = None
        self.commits.append(await super()._commit_ops(owners, sets, ops))
        return self.commits[-1]


def test_a_conflicting_change_falls_back_to_one_transaction_per_decision(settings: Settings):  # type: ignore[no-untyped-def]
    stream = [
        {"email": "e1", "anonymous_id": "ck1"},
        {"anonymous_id": "ck2", "user_id": "u1"},
        {"anonymous_id": "ck2", "email": "e1"},
    ]
    intruder = {"email": "e1", "user_id": "u9"}

    async def run() -> None:
        r = aioredis.Redis.from_url(settings.redis_url)
        prefix = f"contract{uuid.uuid4().hex[:8]}:"
        graph = Interrupted(r, prefix, RULES, intruder=intruder)
        got = await resolve_in_batches(graph, stream, len(stream))
        # the batch's guarded commit saw the intruder and wrote nothing; then each decision
        # was taken again on fresh data and committed by the same guarded script
        assert graph.commits[0] is False and all(graph.commits[1:]) and len(graph.commits) > 1
        memory = MemoryGraph(RULES)
        memory.resolve(intruder)
        want = [memory.resolve(ids).customer_id for ids in stream]
        assert await redis_state(r, prefix) == memory_state(memory)
        assert [g.customer_id for g in got] == want
        await r.aclose()

    asyncio.run(run())
