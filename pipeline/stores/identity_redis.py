"""The identity graph in Redis, shared by every worker.

Why Redis and not a Faust table: an event links identifiers that hash to
different partitions, so a partitioned graph would need a multi-step
re-partition protocol for every link. In Redis one optimistic commit (read the
identifier keys and the customers' member sets, decide with the pure rules, write
the changes with a script that first checks nothing it read has changed) makes
each decision atomic across workers; a conflicting concurrent change makes the
script write nothing and the decision is retried on fresh data. Every graph key
carries the ``{g}`` hash tag, so on a Redis Cluster the graph is one slot and the
script runs on the node that owns it.

Keys (named in ``pipeline.wire.keys``): identifier owners, member sets, merge pointers,
event assignments (so a replayed event goes where it went the first time) and the merges
an event caused (written in the same transaction as the graph change, so a worker killed
before its merge commands reached Kafka re-sends them on replay), erased customers.
Assignments and merges expire after ``CRM_DEDUPE_WINDOW_S`` (``MarkerWindow``); an event
seen again later is resolved afresh (README, "Redis memory").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from pipeline.config import get_settings
from pipeline.stores.identity_scripts import ASSIGN_ALL, COMMIT_DECISIONS, READ_BATCH
from pipeline.transforms.identity import (
    Decision,
    Ident,
    Members,
    MemoryGraph,
    Rules,
    decide,
    new_customer_id,
    parse_members,
    successor_id,
)
from pipeline.transforms.identity_batch import chains
from pipeline.wire.keys import (
    SEP,
    MarkerWindow,
    RedisKeys,
    pack_customer,
    unpack_customer,
)

CONCURRENT_DECISIONS = 16  # graph transactions in flight per batch (Redis connections)
Op = tuple[str | bytes, ...]  # (command, key, *args): one decision's writes


@dataclass
class Resolution:
    customer_id: str | None
    decision: Decision | None = None  # None on the fast path (nothing changed)
    replayed: bool = False
    replayed_merges: list[str] = field(default_factory=list)


class RedisIdentityGraph:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        rules: Rules,
        window: MarkerWindow | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = client
        self.prefix = prefix
        self.rules = rules
        self.keys = RedisKeys(prefix)
        self.window = window or default_window()
        self.shards = self.window.shards()
        self.clock = clock
        self._assign_all = client.register_script(ASSIGN_ALL)
        self._read = client.register_script(READ_BATCH)
        self._commit = client.register_script(COMMIT_DECISIONS)

    async def new_ids(self, idents: Sequence[Ident]) -> dict[Ident, str]:
        """The id a customer created from each identifier gets: never an erased customer's."""
        out = {i: new_customer_id(i) for i in idents}
        pending = dict(out)
        while pending:
            erased = await self.r.mget([self.keys.erased(c) for c in pending.values()])
            found = zip(pending.items(), erased, strict=True)
            pending = {i: successor_id(c) for (i, c), e in found if e}
            out.update(pending)
        return out

    async def _assign(self, fresh: Sequence[tuple[bytes, str]]) -> None:
        """Remember where each event (its marker argument) went, unless a decision already did."""
        if not fresh:
            return
        start = self.window.starts(self.clock())[0]
        args: list[str | bytes | int] = [self.keys.event_markers_head, start]
        args.append(self.window.expire_at(start))
        for marker, cid in fresh:
            args += [marker, pack_customer(cid)]
        routing = self.keys.event_markers(start, 0)
        await self._assign_all(keys=[routing], args=args)

    async def resolve_batch(
        self, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[Resolution]:
        """Resolve (event id, identities) pairs in order; one round trip when nothing changes."""
        identifier = self.keys.identifier
        keys_of = [[identifier(k, v) for k, v in self.rules.usable(ids)] for _, ids in items]
        id_keys = sorted({k for keys in keys_of for k in keys})
        markers = [self.window.marker_arg(e, self.shards) for e, _ in items]
        event_ids = [e for e, _ in items]
        assigned, replay_merges, values = await self._read_batch(event_ids, markers, id_keys)
        owners = dict(zip(id_keys, values, strict=True))
        touched: set[str] = set()
        out: list[Resolution | None] = []
        slow: list[tuple[int, list[str]]] = []  # (position, identifier keys)
        for id_keys_here, prior, merged in zip(keys_of, assigned, replay_merges, strict=True):
            if prior is not None:
                absorbed = _s(merged).split(SEP) if merged else []
                cid = unpack_customer(prior)
                out.append(Resolution(cid, replayed=True, replayed_merges=absorbed))
                continue
            found = {owners.get(k) for k in id_keys_here}
            if (
                id_keys_here
                and len(found) == 1
                and None not in found
                and not touched.intersection(id_keys_here)
            ):
                owner = found.pop()
                out.append(Resolution(_s(owner) if owner else None))
                continue
            touched.update(id_keys_here)
            slow.append((len(out), id_keys_here))
            out.append(None)

        if slow and await self._decide_together(items, slow, owners, out):
            slow = []
        lanes = asyncio.Semaphore(CONCURRENT_DECISIONS)

        async def in_order(positions: list[int]) -> None:
            async with lanes:
                for pos in positions:
                    eid, identities = items[pos]
                    decision = await self.resolve_one(identities, eid)
                    out[pos] = Resolution(decision.customer_id, decision)

        # Decisions that share no identifier run concurrently (each is its own optimistic
        # transaction, so a clash on a customer's member set just retries); those that
        # share one keep their order. The batch then waits for Redis about as many round
        # trips as its longest chain, not as its number of new identifiers.
        await asyncio.gather(*(in_order(group) for group in chains(slow)))
        resolved = [r for r in out if r is not None]
        assert len(resolved) == len(out)
        await self._assign(
            [
                (marker, r.customer_id)
                for marker, r in zip(markers, resolved, strict=True)
                if r.customer_id and not r.replayed
            ]
        )
        return resolved

    async def _read_batch(
        self, event_ids: Sequence[str], markers: Sequence[bytes], plain: Sequence[str]
    ) -> tuple[list[bytes | None], list[bytes | None], list[bytes | None]]:
        """Each event's assignment and replayed merges, and the values of ``plain`` keys."""
        if not event_ids and not plain:
            return [], [], []
        args = self.window.hashes(self.keys.event_markers_head, self.clock())
        args.append(len(event_ids))
        args += markers
        n = len(event_ids)
        keys = [*(self.keys.event_merges(e) for e in event_ids), *plain]
        values = await self._read(keys=keys, args=args)
        return values[0 : 2 * n : 2], values[1 : 2 * n : 2], values[2 * n :]

    async def _decide_together(
        self,
        items: Sequence[tuple[str, Mapping[str, str]]],
        slow: list[tuple[int, list[str]]],
        read: Mapping[str, bytes | str | None],
        out: list[Resolution | None],
    ) -> bool:
        """Decide every slow item in order against one read of the graph; commit in one script.

        The decisions see each other's effects through an in-memory graph seeded with what
        was read; the commit checks that every owner and member set read is unchanged, so it
        is atomic as a whole. False (nothing written) when another worker changed the graph.
        """
        owners: dict[str, str] = {}  # id key -> owner read ('' for none)
        graph = MemoryGraph(self.rules)
        for pos, keys in slow:
            for ident, key in zip(self.rules.usable(items[pos][1]), keys, strict=True):
                raw = read.get(key)
                owners[key] = _s(raw) if raw else ""
                if raw:
                    graph.owners[ident] = _s(raw)
        candidates = sorted({o for o in owners.values() if o})
        sets: dict[str, list[str]] = {}
        if candidates:
            async with self.r.pipeline(transaction=False) as pipe:
                for c in candidates:
                    pipe.smembers(self.keys.members(c))
                for c, raw_members in zip(candidates, await pipe.execute(), strict=True):
                    sets[self.keys.members(c)] = [_s(m) for m in raw_members]
                    graph.members[c] = parse_members(raw_members)
        firsts = [ids[0] for pos, _ in slow if (ids := self.rules.usable(items[pos][1]))]
        fresh = await self.new_ids(firsts)
        ops: list[Op] = []
        decided: list[tuple[int, Decision]] = []
        for pos, _keys in slow:
            eid, identities = items[pos]
            here = {i: graph.owners.get(i) for i in self.rules.usable(identities)}
            members = {c: graph.members.get(c, {}) for c in here.values() if c}
            decision = decide(identities, here, members, self.rules, fresh.__getitem__)
            if decision.changes_graph and decision.customer_id:
                ops += self._ops(decision, members, eid)
                for c in (decision.customer_id, *(m for m, _ in decision.merges)):
                    # A customer this batch writes but did not read must be new.
                    sets.setdefault(self.keys.members(c), [])
                graph.apply(decision)
            decided.append((pos, decision))
        if ops and not await self._commit_ops(owners, sets, ops):
            return False
        for pos, decision in decided:
            out[pos] = Resolution(decision.customer_id, decision)
        return True

    async def _commit_ops(
        self, owners: Mapping[str, str], sets: Mapping[str, list[str]], ops: list[Op]
    ) -> bool:
        index: dict[str | bytes, int] = {}

        def at(key: str | bytes) -> int:
            return index.setdefault(key, len(index) + 1)

        guards: list[str | int] = []
        for key, owner in owners.items():
            guards += ["o", at(key), owner]
        for key, members in sets.items():
            guards += ["m", at(key), len(members), *members]
        writes: list[str | bytes | int] = []
        for cmd, target, *values in ops:
            writes += [cmd, at(target), *values]
        argv = [len(owners) + len(sets), *guards, *writes]
        return bool(await self._commit(keys=list(index), args=argv))

    async def resolve_one(
        self, identities: Mapping[str, str], event_id: str = "", attempts: int = 50
    ) -> Decision:
        """Decide one event's identities on fresh data; commit only if nothing read changed.

        The same guarded script as a batch commit (no WATCH/MULTI, which a Redis Cluster
        client cannot run): read owners and member sets, decide with the pure rules,
        commit guarded by what was read; another worker's change in between makes the
        commit write nothing, and the decision is taken again.
        """
        ids = self.rules.usable(identities)
        id_keys = [self.keys.identifier(*i) for i in ids]
        fresh = await self.new_ids(ids[:1])
        for _ in range(attempts):
            raw_owners = await self.r.mget(id_keys) if id_keys else []
            owners = {i: _s(o) if o else None for i, o in zip(ids, raw_owners, strict=True)}
            candidates = sorted({o for o in owners.values() if o})
            members: dict[str, Members] = {}
            sets: dict[str, list[str]] = {}
            if candidates:
                async with self.r.pipeline(transaction=False) as pipe:
                    for c in candidates:
                        pipe.smembers(self.keys.members(c))
                    for c, raw in zip(candidates, await pipe.execute(), strict=True):
                        members[c] = parse_members(raw)
                        sets[self.keys.members(c)] = [_s(m) for m in raw]
            decision = decide(identities, owners, members, self.rules, fresh.__getitem__)
            if not decision.changes_graph or not decision.customer_id:
                return decision
            for c in (decision.customer_id, *(m for m, _ in decision.merges)):
                sets.setdefault(self.keys.members(c), [])  # written, not read: must be new
            read = {k: _s(o) if o else "" for k, o in zip(id_keys, raw_owners, strict=True)}
            if await self._commit_ops(read, sets, self._ops(decision, members, event_id)):
                return decision
        raise RuntimeError(f"identity resolution did not converge after {attempts} attempts")

    def _ops(self, d: Decision, members: Mapping[str, Members], event_id: str) -> list[Op]:
        """The writes a decision makes, as (command, key, *args); one list for both paths."""
        assert d.customer_id is not None
        cid = d.customer_id
        target = self.keys.members(cid)
        ops: list[Op] = []
        for ident in d.attach:
            ops += [("SET", self.keys.identifier(*ident), cid), ("SADD", target, SEP.join(ident))]
        for absorbed, _via in d.merges:
            for kind, values in members.get(absorbed, {}).items():
                for value in values:
                    ops += [("SET", self.keys.identifier(kind, value), cid)]
                    ops += [("SADD", target, f"{kind}{SEP}{value}")]
            ops += [
                ("DEL", self.keys.members(absorbed)),
                ("SET", self.keys.merged_into(absorbed), cid),
            ]
        for ident, previous in d.moves:
            ops += [("SET", self.keys.identifier(*ident), cid)]
            ops += [("SREM", self.keys.members(previous), SEP.join(ident))]
            ops += [("SADD", target, SEP.join(ident))]
        if event_id:
            # In the same atomic change as the graph: a replay re-sends the merge commands.
            start = self.window.starts(self.clock())[0]
            expire_at = str(self.window.expire_at(start))
            mark, shard = self.window.marker(event_id, self.shards)
            key = self.keys.event_markers(start, shard)
            ops += [("HMARK", key, mark, pack_customer(cid), expire_at)]
            if d.merges:
                merged = SEP.join(m for m, _ in d.merges)
                ops += [("SETEX", self.keys.event_merges(event_id), merged, expire_at)]
        return ops

    async def lookup(self, ident: Ident) -> str | None:
        owner = await self.r.get(self.keys.identifier(*ident))
        return _s(owner) if owner else None

    async def survivor(self, customer_id: str, max_hops: int = 20) -> str:
        for _ in range(max_hops):
            nxt = await self.r.get(self.keys.merged_into(customer_id))
            if not nxt:
                return customer_id
            customer_id = _s(nxt)
        return customer_id


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def default_window() -> MarkerWindow:
    """``CRM_DEDUPE_WINDOW_S`` and ``CRM_DEDUPE_RATE`` of the process's settings."""
    settings = get_settings()
    return MarkerWindow(settings.dedupe_window_s, settings.dedupe_rate)
