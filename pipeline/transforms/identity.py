"""Identity resolution rules: which customer an event belongs to, and which links to keep.

A pure decision over a snapshot of the identity graph; the Redis store applies the
decision atomically, the Beam backfill applies it to connected components. Rules
follow Segment's identity resolution: a limit per identifier type, a priority
order, blocked values. The consequences:

* the strongest identifier of the event decides the customer;
* an unknown identifier is attached if its type's limit allows, otherwise the
  event starts a new customer (e.g. a second login id on a shared device);
* two customers merge only if the union respects every limit, so two different
  user ids never merge through a shared cookie;
* a weak identifier (a cookie) that cannot merge is reassigned to the customer
  the event belongs to: a cookie belongs to one known customer at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import yaml

from pipeline.transforms.identifiers import BLOCKED_VALUES, PRIORITY, canonical
from pipeline.wire.keys import SEP

Ident = tuple[str, str]  # (kind, value)
Members = Mapping[str, frozenset[str] | set[str]]  # kind -> values of one customer


@dataclass(frozen=True)
class Rules:
    priority: tuple[str, ...] = PRIORITY
    limits: Mapping[str, int] = field(
        default_factory=lambda: {
            "user_id": 1,
            "email": 3,
            "loyalty_id": 2,
            "phone": 2,
            "anonymous_id": 200,
        }
    )
    blocked: frozenset[str] = BLOCKED_VALUES
    reassignable: frozenset[str] = frozenset({"anonymous_id"})

    @cached_property
    def _ranks(self) -> dict[str, int]:
        ranks: dict[str, int] = {}
        for i, kind in enumerate(self.priority):
            ranks.setdefault(kind, i)  # the first place counts, as priority.index says
        return ranks

    def rank(self, kind: str) -> int:
        base = kind.split(":", 1)[0] if ":" in kind else kind
        return self._ranks.get(base, len(self.priority))

    def _order(self, ident: Ident) -> tuple[int, str, str]:
        return (self.rank(ident[0]), ident[0], ident[1])

    def limit(self, kind: str) -> int:
        return self.limits.get(kind, self.limits.get(kind.split(":", 1)[0], 1_000_000))

    def usable(self, identities: Mapping[str, str]) -> list[Ident]:
        """Identifiers that may link, strongest first."""
        blocked = self.blocked
        out = [(k, v) for k, v in identities.items() if v and v.strip().lower() not in blocked]
        if len(out) > 1:
            out.sort(key=self._order)
        return out

    def as_stored(self, salt: str, hash_pii: bool) -> Rules:
        """The rules with blocked emails also in the form identifiers reach the stage in:
        the collector hashes emails (and email-shaped ids), so a plain blocked address
        would never match."""
        extra = {
            canonical("email", v, salt=salt, hash_pii=hash_pii) for v in self.blocked if "@" in v
        }
        extra |= {
            canonical("user_id", v, salt=salt, hash_pii=hash_pii) for v in self.blocked if "@" in v
        }
        return replace(self, blocked=self.blocked | frozenset(extra))


class RulesError(ValueError):
    """The rules file is invalid; the message names the problem."""


def parse_identity_rules(text: str, path: str = "<identity rules>") -> Rules:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise RulesError(f"{path}: expected a mapping at the top level")
    unknown = set(doc) - {"priority", "limits", "blocked", "reassignable"}
    if unknown:
        raise RulesError(f"{path}: unknown keys {sorted(unknown)}")
    limits = doc.get("limits", {})
    if not all(isinstance(v, int) and v >= 1 for v in limits.values()):
        raise RulesError(f"{path}: limits must be positive integers")
    defaults = Rules()
    return Rules(
        priority=tuple(doc.get("priority", defaults.priority)),
        limits={**defaults.limits, **limits},
        blocked=frozenset(str(v).strip().lower() for v in doc.get("blocked", [])) | BLOCKED_VALUES,
        reassignable=frozenset(doc.get("reassignable", defaults.reassignable)),
    )


def parse_members(raw: Iterable[bytes | str]) -> dict[str, set[str]]:
    """A customer's identifiers by kind, from its member set (``kind SEP value`` items)."""
    out: dict[str, set[str]] = {}
    for item in raw:
        kind, _, value = (item.decode() if isinstance(item, bytes) else item).partition(SEP)
        out.setdefault(kind, set()).add(value)
    return out


def new_customer_id(ident: Ident) -> str:
    """Deterministic, so a replayed event creates the same customer."""
    return "c_" + hashlib.blake2b(f"{ident[0]}:{ident[1]}".encode(), digest_size=10).hexdigest()


def successor_id(erased: str) -> str:
    """The id a customer created from the same identifier gets once ``erased`` was forgotten."""
    return "c_" + hashlib.blake2b(f"after:{erased}".encode(), digest_size=10).hexdigest()


@dataclass
class Decision:
    customer_id: str | None
    created: bool = False
    attach: list[Ident] = field(default_factory=list)
    merges: list[tuple[str, Ident]] = field(default_factory=list)  # (absorbed customer, via)
    moves: list[tuple[Ident, str]] = field(default_factory=list)  # (identifier, from customer)
    dropped: list[tuple[Ident, str]] = field(default_factory=list)  # (identifier, reason)

    @property
    def changes_graph(self) -> bool:
        return bool(self.created or self.attach or self.merges or self.moves)


def _fits(members: dict[str, set[str]], kind: str, value: str, rules: Rules) -> bool:
    have = members.get(kind, set())
    return value in have or len(have) < rules.limit(kind)


def _merge_fits(a: dict[str, set[str]], b: Members, rules: Rules) -> str | None:
    """None if a and b may merge, else the identifier type whose limit forbids it."""
    for kind, values in b.items():
        if len(a.get(kind, set()) | set(values)) > rules.limit(kind):
            return kind
    return None


def decide(
    identities: Mapping[str, str],
    owners: Mapping[Ident, str | None],
    members: Mapping[str, Members],
    rules: Rules,
    new_id: Callable[[Ident], str] = new_customer_id,
) -> Decision:
    """Resolve one event.

    ``owners`` maps each of the event's identifiers to its customer (or None);
    ``members`` gives the identifier sets of those customers; ``new_id`` names a
    customer this event creates (the store skips ids of erased customers).
    """
    ids = rules.usable(identities)
    if not ids:
        return Decision(
            customer_id=None, dropped=[((k, v), "blocked value") for k, v in identities.items()]
        )
    owned = [(i, owners[i]) for i in ids if owners.get(i)]
    target = owned[0][1] if owned else None
    target_rank = rules.rank(owned[0][0][0]) if owned else len(rules.priority) + 1
    current: dict[str, set[str]] = (
        {k: set(v) for k, v in members.get(target, {}).items()} if target else {}
    )

    # An unknown identifier stronger than the target's that cannot join it starts a new customer.
    for kind, value in ids:
        if owners.get((kind, value)) or rules.rank(kind) >= target_rank:
            continue
        if target is not None and not _fits(current, kind, value, rules):
            target = None
            break
    decision = Decision(customer_id=target)
    if target is None:
        decision.customer_id = new_id(ids[0])
        decision.created = True
        current = {}

    for kind, value in ids:
        ident = (kind, value)
        owner = owners.get(ident)
        if owner == decision.customer_id:
            continue
        if owner is None:
            if _fits(current, kind, value, rules):
                current.setdefault(kind, set()).add(value)
                decision.attach.append(ident)
            else:
                decision.dropped.append(
                    (ident, f"limit: customer already has {rules.limit(kind)} {kind}")
                )
            continue
        if owner in {m for m, _ in decision.merges}:
            continue
        blocker = _merge_fits(current, members.get(owner, {}), rules)
        if blocker is None:
            for k, values in members.get(owner, {}).items():
                current.setdefault(k, set()).update(values)
            decision.merges.append((owner, ident))
        elif kind in rules.reassignable and _fits(current, kind, value, rules):
            current.setdefault(kind, set()).add(value)
            decision.moves.append((ident, owner))
        else:
            decision.dropped.append(
                (ident, f"belongs to {owner}; merging would exceed the {blocker} limit")
            )
    return decision


class MemoryGraph:
    """The identity graph in memory: used by the Beam backfill and by tests.

    Applies decisions the same way the Redis store does, so both resolve a
    sequence of events to the same customers.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.owners: dict[Ident, str] = {}
        self.members: dict[str, dict[str, set[str]]] = {}
        self.merged_into: dict[str, str] = {}

    def resolve(self, identities: Mapping[str, str]) -> Decision:
        ids = self.rules.usable(identities)
        owners = {i: self.owners.get(i) for i in ids}
        members = {c: self.members.get(c, {}) for c in owners.values() if c}
        decision = decide(identities, owners, members, self.rules)
        self.apply(decision)
        return decision

    def apply(self, d: Decision) -> None:
        if d.customer_id is None:
            return
        target = self.members.setdefault(d.customer_id, {})
        for kind, value in d.attach:
            self.owners[(kind, value)] = d.customer_id
            target.setdefault(kind, set()).add(value)
        for absorbed, _via in d.merges:
            for kind, values in self.members.pop(absorbed, {}).items():
                for value in values:
                    self.owners[(kind, value)] = d.customer_id
                target.setdefault(kind, set()).update(values)
            self.merged_into[absorbed] = d.customer_id
        for (kind, value), previous in d.moves:
            self.owners[(kind, value)] = d.customer_id
            self.members.get(previous, {}).get(kind, set()).discard(value)
            target.setdefault(kind, set()).add(value)

    def survivor(self, customer_id: str) -> str:
        while customer_id in self.merged_into:
            customer_id = self.merged_into[customer_id]
        return customer_id
