"""Identity resolution for a whole history at once: connected components, then the rules.

The streaming identity stage decides event by event against a shared graph. In a
backfill every event is known up front, so the work splits in two:

1. **connected components** of the "appears in the same event" relation over
   usable identifiers (union-find). Two events can only ever influence each
   other's customer if their identifiers are connected, so components are
   independent and can be resolved in parallel;
2. **the same rules, in arrival order, inside each component**: a
   ``MemoryGraph`` (the pure ``decide`` function the workers use) replays the
   component's events sorted by receipt time and event id. The rules are
   order-dependent (limits, shared-cookie reassignment), so this is also what
   the streaming path computes when events arrive in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipeline.events import Event
from pipeline.transforms.identity import Ident, MemoryGraph, Rules


class UnionFind:
    """Disjoint sets of identifiers with path halving; mergeable for a distributed combine."""

    def __init__(self) -> None:
        self.parent: dict[Ident, Ident] = {}

    def find(self, x: Ident) -> Ident:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: Ident, b: Ident) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller identifier becomes the root: roots do not depend on input order.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra

    def add_group(self, idents: Iterable[Ident]) -> None:
        it = iter(idents)
        first = next(it, None)
        if first is None:
            return
        self.find(first)
        for other in it:
            self.union(first, other)

    def merge(self, other: UnionFind) -> None:
        for child, parent in other.parent.items():
            self.union(child, parent)

    def roots(self) -> dict[Ident, Ident]:
        """Every identifier mapped to its component's root (the smallest identifier)."""
        return {x: self.find(x) for x in list(self.parent)}


def arrival_order(event: Event) -> tuple[str, str]:
    received = event.received_at.isoformat() if event.received_at else ""
    return (received, event.message_id or "")


@dataclass(frozen=True)
class Assigned:
    """One event's outcome: the customer it was assigned to and the final survivor."""

    event: Event
    customer_id: str  # as the identity stage would have routed it
    survivor: str  # after every merge in the component


@dataclass(frozen=True)
class Resolved:
    assigned: list[Assigned]
    merges: list[tuple[str, str, Event]]  # (absorbed, survivor at the time, merging event)
    members: dict[str, dict[str, set[str]]]  # final survivor -> identifiers by kind


def resolve_component(events: Iterable[Event], rules: Rules) -> Resolved:
    """Apply the identity rules to one component's events in arrival order."""
    graph = MemoryGraph(rules)
    routed: list[tuple[Event, str]] = []
    merges: list[tuple[str, str, Event]] = []
    for event in sorted(events, key=arrival_order):
        d = graph.resolve(event.identities)
        if d.customer_id is None:
            continue
        routed.append((event, d.customer_id))
        merges += [(absorbed, d.customer_id, event) for absorbed, _ in d.merges]
    assigned = [Assigned(e, cid, graph.survivor(cid)) for e, cid in routed]
    return Resolved(assigned, merges, graph.members)


def dedupe(events: Iterable[Event]) -> Iterator[Event]:
    """One event per event id (the first in arrival order), as the profile dedupe would."""
    seen: set[str] = set()
    for event in sorted(events, key=arrival_order):
        eid = event.message_id or ""
        if eid and eid in seen:
            continue
        seen.add(eid)
        yield event


def chains(slow: list[tuple[int, list[str]]]) -> list[list[int]]:
    """Group positions whose identifier keys overlap (transitively), each group in order.

    The streaming identity store runs the groups' decisions concurrently: they share no
    identifier, so their order does not matter; inside a group it does.
    """
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
