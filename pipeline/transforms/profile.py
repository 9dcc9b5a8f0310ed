"""The customer profile as a mergeable value: ``combine(a, b)`` and its building blocks.

Every field is one of a few algebraic kinds, which is what makes identity merges,
out-of-order events, replays and Beam's CombinePerKey the same operation:

* counters and money (integer cents, so sums do not depend on order) add;
* first/last times take min/max;
* traits, consent and case status are last-writer-wins by (event time, event id);
* identifier and purchase-time sets unite;
* web sessions are intervals merged when closer than the inactivity gap.

Bounded parts (dedupe window, last N sessions and purchase times) are pruned
deterministically; README lists where that makes very old late events approximate.
"""

from __future__ import annotations

from typing import Any

import msgspec

SESSION_GAP_MS = 30 * 60 * 1000
DEDUPE_WINDOW_MS = 30 * 24 * 3600 * 1000
MAX_SEEN = 20_000
MAX_SESSIONS = 200
MAX_PURCHASE_TIMES = 500
MAX_KEYS = 500


class Lww(msgspec.Struct, array_like=True, frozen=True):
    """A value with the (event time, event id) that wrote it."""

    value: Any
    ts: int
    eid: str


class Span(msgspec.Struct, array_like=True):
    first: int
    last: int
    count: int


class Session(msgspec.Struct, array_like=True):
    start: int
    end: int
    events: int
    pages: int
    products: int


class Spend(msgspec.Struct, array_like=True):
    count: int
    cents: int


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Everything known about one customer; ``version`` grows with every change."""

    customer_id: str
    version: int = 0
    events: int = 0
    merged_into: str | None = None
    merges: list[str] = []
    identifiers: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    first_seen: int | None = None
    last_seen: int | None = None
    channels: dict[str, Span] = {}
    counts: dict[str, int] = {}
    traits: dict[str, Lww] = {}
    consent: dict[str, Lww] = {}
    sessions: list[Session] = []
    page_views: int = 0
    product_views: dict[str, int] = {}
    cart_adds: int = 0
    cart_cents: int = 0
    orders: int = 0
    revenue_cents: int = 0
    purchase_times: list[int] = []
    categories: dict[str, Spend] = {}
    brands: dict[str, Spend] = {}
    skus_bought: dict[str, int] = {}
    stores: dict[str, int] = {}
    email: dict[str, dict[str, int]] = {}
    support: dict[str, int] = {}
    complaint_topics: dict[str, int] = {}
    cases: dict[str, Lww] = {}
    points_earned: int = 0
    points_redeemed: int = 0
    scores: dict[str, Lww] = {}


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Profile)


def encode(profile: Profile) -> bytes:
    return _encoder.encode(profile)


def decode(data: bytes) -> Profile:
    return _decoder.decode(data)


def clone(profile: Profile) -> Profile:
    return _decoder.decode(_encoder.encode(profile))


# --- field algebra ---------------------------------------------------------------


def lww(a: Lww | None, b: Lww | None) -> Lww | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if (a.ts, a.eid) >= (b.ts, b.eid) else b


def add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def add_spend(a: dict[str, Spend], b: dict[str, Spend]) -> dict[str, Spend]:
    out = {k: Spend(v.count, v.cents) for k, v in a.items()}
    for k, v in b.items():
        cur = out.get(k)
        out[k] = (
            Spend(v.count, v.cents)
            if cur is None
            else Spend(cur.count + v.count, cur.cents + v.cents)
        )
    return out


def merge_lww(a: dict[str, Lww], b: dict[str, Lww]) -> dict[str, Lww]:
    out = dict(a)
    for k, v in b.items():
        out[k] = lww(out.get(k), v)  # type: ignore[assignment]
    return out


def merge_spans(a: dict[str, Span], b: dict[str, Span]) -> dict[str, Span]:
    out = {k: Span(v.first, v.last, v.count) for k, v in a.items()}
    for k, v in b.items():
        cur = out.get(k)
        out[k] = (
            Span(v.first, v.last, v.count)
            if cur is None
            else Span(min(cur.first, v.first), max(cur.last, v.last), cur.count + v.count)
        )
    return out


def union_sorted(a: list[Any], b: list[Any], cap: int | None = None) -> list[Any]:
    merged = sorted(set(a) | set(b))
    return merged[-cap:] if cap else merged


def add_session(sessions: list[Session], new: Session, gap: int = SESSION_GAP_MS) -> list[Session]:
    """Insert a session, merging every session closer than ``gap``; result sorted by start.

    Equivalent to sessionising the sorted event times, whatever the insertion order.
    """
    merged = Session(new.start, new.end, new.events, new.pages, new.products)
    keep = []
    for s in sessions:
        if s.end + gap >= merged.start and merged.end + gap >= s.start:
            merged = Session(
                min(s.start, merged.start),
                max(s.end, merged.end),
                s.events + merged.events,
                s.pages + merged.pages,
                s.products + merged.products,
            )
        else:
            keep.append(s)
    keep.append(merged)
    keep.sort(key=lambda s: s.start)
    return keep[-MAX_SESSIONS:]


def prune_seen(seen: dict[str, int]) -> dict[str, int]:
    """Keep event ids within the dedupe window of the newest one (bounded memory)."""
    if not seen:
        return seen
    horizon = max(seen.values()) - DEDUPE_WINDOW_MS
    kept = {k: t for k, t in seen.items() if t >= horizon}
    if len(kept) > MAX_SEEN:
        kept = dict(sorted(kept.items(), key=lambda kv: (kv[1], kv[0]))[-MAX_SEEN:])
    return kept


def _minmax(a: int | None, b: int | None, pick: Any) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return int(pick(a, b))


def combine(a: Profile, b: Profile) -> Profile:
    """The profile of a customer whose events are those of ``a`` and ``b`` together.

    Associative and commutative (up to ``customer_id``, which is ``a``'s): the
    identity-merge survivor keeps its id. Events in both are counted once only if
    their contributions are disjoint, which the identity stage guarantees by
    assigning every event id to exactly one customer.
    """
    sessions = list(a.sessions)
    for s in b.sessions:
        sessions = add_session(sessions, s)
    identifiers = {
        k: union_sorted(a.identifiers.get(k, []), b.identifiers.get(k, []))
        for k in sorted(set(a.identifiers) | set(b.identifiers))
    }
    email = {
        c: add_counts(a.email.get(c, {}), b.email.get(c, {}))
        for c in sorted(set(a.email) | set(b.email))
    }
    return Profile(
        customer_id=a.customer_id,
        version=a.version + b.version,
        events=a.events + b.events,
        merged_into=a.merged_into,
        merges=union_sorted(a.merges, b.merges),
        identifiers=identifiers,
        seen=prune_seen({**a.seen, **b.seen}),
        first_seen=_minmax(a.first_seen, b.first_seen, min),
        last_seen=_minmax(a.last_seen, b.last_seen, max),
        channels=merge_spans(a.channels, b.channels),
        counts=add_counts(a.counts, b.counts),
        traits=merge_lww(a.traits, b.traits),
        consent=merge_lww(a.consent, b.consent),
        sessions=sessions,
        page_views=a.page_views + b.page_views,
        product_views=add_counts(a.product_views, b.product_views),
        cart_adds=a.cart_adds + b.cart_adds,
        cart_cents=a.cart_cents + b.cart_cents,
        orders=a.orders + b.orders,
        revenue_cents=a.revenue_cents + b.revenue_cents,
        purchase_times=union_sorted(a.purchase_times, b.purchase_times, MAX_PURCHASE_TIMES),
        categories=add_spend(a.categories, b.categories),
        brands=add_spend(a.brands, b.brands),
        skus_bought=add_counts(a.skus_bought, b.skus_bought),
        stores=add_counts(a.stores, b.stores),
        email=email,
        support=add_counts(a.support, b.support),
        complaint_topics=add_counts(a.complaint_topics, b.complaint_topics),
        cases=merge_lww(a.cases, b.cases),
        points_earned=a.points_earned + b.points_earned,
        points_redeemed=a.points_redeemed + b.points_redeemed,
        scores=merge_lww(a.scores, b.scores),
    )
