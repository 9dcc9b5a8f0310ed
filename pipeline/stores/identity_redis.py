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
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from pipeline.transforms.identity import (
    Decision,
    Ident,
    Members,
    MemoryGraph,
    Rules,
    decide,
    new_customer_id,
    successor_id,
)
from pipeline.wire.keys import SEP, RedisKeys

ASSIGNMENT_TTL_S = 30 * 24 * 3600
CONCURRENT_DECISIONS = 16  # graph transactions in flight per batch (Redis connections)
# One command for a whole batch's assignments: redis-py packs a command in Python, so a
# pipeline of one SET per event costs more than the resolution itself.
ASSIGN_ALL = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1], 'NX')
end
return #KEYS
"""
# A batch's identity decisions, committed at once if nothing they read has changed since.
# KEYS: every key read or written; ARGV: number of guards, the guards ('o', key index,
# expected owner or '' | 'm', key index, n, n members), the assignment TTL, then the writes
# (command, key index[, value]). Returns 0, having written nothing, if a guard fails.
COMMIT_DECISIONS = """
local i, guards = 2, tonumber(ARGV[1])
for _ = 1, guards do
  local key = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'o' then
    if (redis.call('GET', key) or '') ~= ARGV[i + 2] then return 0 end
    i = i + 3
  else
    local n = tonumber(ARGV[i + 2])
    if redis.call('SCARD', key) ~= n then return 0 end
    for j = 1, n do
      if redis.call('SISMEMBER', key, ARGV[i + 2 + j]) == 0 then return 0 end
    end
    i = i + 3 + n
  end
end
local ttl = ARGV[i]
i = i + 1
while i <= #ARGV do
  local op, key = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  if op == 'DEL' then
    redis.call('DEL', key)
    i = i + 2
  elseif op == 'SETEX' then
    redis.call('SET', key, ARGV[i + 2], 'EX', ttl)
    i = i + 3
  else
    redis.call(op, key, ARGV[i + 2])
    i = i + 3
  end
end
return 1
"""
Op = tuple[str, ...]  # (command, key, *args): one decision's writes


@dataclass
class Resolution:
    customer_id: str | None
    decision: Decision | None = None  # None on the fast path (nothing changed)
    replayed: bool = False
    replayed_merges: list[str] = field(default_factory=list)


class RedisIdentityGraph:
    def __init__(self, client: aioredis.Redis, prefix: str, rules: Rules) -> None:
        self.r = client
        self.prefix = prefix
        self.rules = rules
        self.keys = RedisKeys(prefix)
        self._assign_all = client.register_script(ASSIGN_ALL)
        self._commit = client.register_script(COMMIT_DECISIONS)

    def id_key(self, ident: Ident) -> str:
        return self.keys.identifier(*ident)

    def members_key(self, customer_id: str) -> str:
        return self.keys.members(customer_id)

    def merged_key(self, customer_id: str) -> str:
        return self.keys.merged_into(customer_id)

    def erased_key(self, customer_id: str) -> str:
        return self.keys.erased(customer_id)

    async def new_ids(self, idents: Sequence[Ident]) -> dict[Ident, str]:
        """The id a customer created from each identifier gets: never an erased customer's."""
        out = {i: new_customer_id(i) for i in idents}
        pending = dict(out)
        while pending:
            erased = await self.r.mget([self.erased_key(c) for c in pending.values()])
            found = zip(pending.items(), erased, strict=True)
            pending = {i: successor_id(c) for (i, c), e in found if e}
            out.update(pending)
        return out

    def evt_key(self, event_id: str) -> str:
        return self.keys.event(event_id)

    def evt_merges_key(self, event_id: str) -> str:
        return self.keys.event_merges(event_id)

    async def resolve_batch(
        self, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[Resolution]:
        """Resolve (event id, identities) pairs in order; one round trip when nothing changes."""
        usable = [self.rules.usable(ids) for _, ids in items]
        keys = [self.evt_key(eid) for eid, _ in items]
        mkeys = [self.evt_merges_key(eid) for eid, _ in items]
        id_keys = sorted({self.id_key(i) for ids in usable for i in ids})
        values = await self.r.mget(keys + mkeys + id_keys) if keys or id_keys else []
        n = len(keys)
        assigned = values[:n]
        replay_merges = values[n : 2 * n]
        owners = dict(zip(id_keys, values[2 * n :], strict=True))
        touched: set[str] = set()
        out: list[Resolution | None] = []
        slow: list[tuple[int, list[str]]] = []  # (position, identifier keys)
        for (_eid, _identities), ids, prior, merged in zip(
            items, usable, assigned, replay_merges, strict=True
        ):
            if prior is not None:
                absorbed = _s(merged).split(SEP) if merged else []
                out.append(Resolution(_s(prior), replayed=True, replayed_merges=absorbed))
                continue
            id_keys_here = [self.id_key(i) for i in ids]
            found = {owners.get(k) for k in id_keys_here}
            if (
                ids
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
        await asyncio.gather(*(in_order(group) for group in _chains(slow)))
        resolved = [r for r in out if r is not None]
        assert len(resolved) == len(out)
        fresh = [
            (self.evt_key(eid), res.customer_id)
            for (eid, _), res in zip(items, resolved, strict=True)
            if res.customer_id and not res.replayed
        ]
        if fresh:
            await self._assign_all(
                keys=[k for k, _ in fresh], args=[ASSIGNMENT_TTL_S, *(c for _, c in fresh)]
            )
        return resolved

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
                    pipe.smembers(self.members_key(c))
                for c, raw_members in zip(candidates, await pipe.execute(), strict=True):
                    sets[self.members_key(c)] = [_s(m) for m in raw_members]
                    graph.members[c] = _parse_members(raw_members)
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
                    sets.setdefault(self.members_key(c), [])
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
        index: dict[str, int] = {}

        def at(key: str) -> int:
            return index.setdefault(key, len(index) + 1)

        guards: list[str | int] = []
        for key, owner in owners.items():
            guards += ["o", at(key), owner]
        for key, members in sets.items():
            guards += ["m", at(key), len(members), *members]
        writes: list[str | int] = []
        for cmd, key, *values in ops:
            writes += [cmd, at(key), *values]
        argv = [len(owners) + len(sets), *guards, ASSIGNMENT_TTL_S, *writes]
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
        id_keys = [self.id_key(i) for i in ids]
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
                        pipe.smembers(self.members_key(c))
                    for c, raw in zip(candidates, await pipe.execute(), strict=True):
                        members[c] = _parse_members(raw)
                        sets[self.members_key(c)] = [_s(m) for m in raw]
            decision = decide(identities, owners, members, self.rules, fresh.__getitem__)
            if not decision.changes_graph or not decision.customer_id:
                return decision
            for c in (decision.customer_id, *(m for m, _ in decision.merges)):
                sets.setdefault(self.members_key(c), [])  # written, not read: must be new
            read = {k: _s(o) if o else "" for k, o in zip(id_keys, raw_owners, strict=True)}
            if await self._commit_ops(read, sets, self._ops(decision, members, event_id)):
                return decision
        raise RuntimeError(f"identity resolution did not converge after {attempts} attempts")

    def _ops(self, d: Decision, members: Mapping[str, Members], event_id: str) -> list[Op]:
        """The writes a decision makes, as (command, key, *args); one list for both paths."""
        assert d.customer_id is not None
        cid = d.customer_id
        target = self.members_key(cid)
        ops: list[Op] = []
        for ident in d.attach:
            ops += [("SET", self.id_key(ident), cid), ("SADD", target, SEP.join(ident))]
        for absorbed, _via in d.merges:
            for kind, values in members.get(absorbed, {}).items():
                for value in values:
                    ops += [("SET", self.id_key((kind, value)), cid)]
                    ops += [("SADD", target, f"{kind}{SEP}{value}")]
            ops += [("DEL", self.members_key(absorbed)), ("SET", self.merged_key(absorbed), cid)]
        for ident, previous in d.moves:
            ops += [("SET", self.id_key(ident), cid)]
            ops += [("SREM", self.members_key(previous), SEP.join(ident))]
            ops += [("SADD", target, SEP.join(ident))]
        if event_id:
            # In the same atomic change as the graph: a replay re-sends the merge commands.
            ops += [("SETEX", self.evt_key(event_id), cid)]
            if d.merges:
                merged = SEP.join(m for m, _ in d.merges)
                ops += [("SETEX", self.evt_merges_key(event_id), merged)]
        return ops

    async def lookup(self, ident: Ident) -> str | None:
        owner = await self.r.get(self.id_key(ident))
        return _s(owner) if owner else None

    async def survivor(self, customer_id: str, max_hops: int = 20) -> str:
        for _ in range(max_hops):
            nxt = await self.r.get(self.merged_key(customer_id))
            if not nxt:
                return customer_id
            customer_id = _s(nxt)
        return customer_id


def _chains(slow: list[tuple[int, list[str]]]) -> list[list[int]]:
    """Group positions whose identifier keys overlap (transitively), each group in order."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for _pos, keys in slow:
        for k in keys[1:]:
            parent[find(k)] = find(keys[0])
    groups: dict[str, list[int]] = {}
    for pos, keys in slow:
        root = find(keys[0]) if keys else f"#{pos}"
        groups.setdefault(root, []).append(pos)
    return list(groups.values())


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_members(raw: set[bytes | str] | set[bytes] | set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in raw:
        kind, _, value = _s(item).partition(SEP)
        out.setdefault(kind, set()).add(value)
    return out
