"""The customer profile as a mergeable value: ``combine(a, b)`` and its building blocks.

Every field is one of a few algebraic kinds, which is what makes identity merges,
out-of-order events, replays and Beam's CombinePerKey the same operation:

* counters and money (integer cents, so sums do not depend on order) add;
* first/last times take min/max;
* traits, group traits, consent and case status are last-writer-wins by (event time,
  event id); first-touch attribution is first-writer-wins by the same order;
* identifier and purchase-time sets unite;
* web sessions are intervals merged when closer than the inactivity gap.

Bounded parts (dedupe window, last N sessions and purchase times) are pruned
deterministically; README lists where that makes very old late events approximate.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import msgspec

from pipeline.wire.change import Change

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


class Audience(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Derived marketing state: not part of the profile algebra, recomputed on change."""

    stage: str = ""
    tier: str = ""
    segments: dict[str, int] = {}  # segment -> event time entered
    due: int | None = None  # next event time a time-relative condition flips
    changes: list[Change] = []  # transitions of the last change, re-sent on replays


class Touch(msgspec.Struct, array_like=True):
    """Affinity evidence for one category or brand: total weight and weight x time (s).

    Both add exactly, so a recency-weighted score (see ``decayed``) is as
    order-independent as every other field.
    """

    weight: int
    weighted_s: int


AFFINITY_HALF_LIFE_S = 30 * 24 * 3600


def decayed(touch: Touch, now_ms: int, half_life_s: int = AFFINITY_HALF_LIFE_S) -> float:
    """Weight decayed by half every ``half_life_s`` since the weighted mean touch time.

    A lower bound of the exactly decayed sum (Jensen), close to it when touches
    cluster, and mergeable with integer arithmetic.
    """
    if touch.weight <= 0:
        return 0.0
    age = max(0.0, now_ms / 1000 - touch.weighted_s / touch.weight)
    return touch.weight * 0.5 ** (age / half_life_s)


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
    groups: dict[str, dict[str, Lww]] = {}  # group (account) id -> that group's traits
    first_touch: Lww | None = None  # attribution of the earliest touch: first writer wins
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
    affinity: dict[str, Touch] = {}  # "category:shoes", "brand:Ecco" -> evidence over time
    preferences: dict[str, Lww] = {}  # stated in the preference centre; always win
    audience: Audience | None = None  # derived; merge_into leaves it alone
    # Event-time days (ms // DAY) with a dedupe bucket in the stream worker's state; the
    # worker keeps ``seen`` there, not here. Bookkeeping, not algebra: merge_into ignores it.
    seen_days: list[int] = []


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Profile)


def encode(profile: Profile) -> bytes:
    return _encoder.encode(profile)


def decode(data: bytes) -> Profile:
    return _decoder.decode(data)


def clone(profile: Profile) -> Profile:
    return _decoder.decode(_encoder.encode(profile))


# --- field algebra ---------------------------------------------------------------


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
    """Keep event ids within the dedupe window of the newest one, at most MAX_SEEN.

    Runs only when the set outgrows MAX_SEEN, so it never touches the dedupe of
    a customer with fewer events than that.
    """
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


def add_into(a: dict[str, int], b: dict[str, int]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0) + v


def spend_into(a: dict[str, Spend], b: dict[str, Spend]) -> None:
    for k, v in b.items():
        cur = a.get(k)
        a[k] = (
            Spend(v.count, v.cents)
            if cur is None
            else Spend(cur.count + v.count, cur.cents + v.cents)
        )


def touch_into(a: dict[str, Touch], b: dict[str, Touch]) -> None:
    for k, t in b.items():
        had = a.get(k)
        a[k] = (
            Touch(t.weight, t.weighted_s)
            if had is None
            else Touch(had.weight + t.weight, had.weighted_s + t.weighted_s)
        )


def lww_into(a: dict[str, Lww], b: dict[str, Lww]) -> None:
    for k, v in b.items():
        cur = a.get(k)
        if cur is None or (v.ts, v.eid) > (cur.ts, cur.eid):
            a[k] = v


def union_into(a: list[Any], b: list[Any], cap: int | None = None) -> list[Any]:
    """Sorted, de-duplicated union of ``a`` (already sorted and unique) and ``b``.

    Folding one event adds a value ``a`` usually holds already (the customer's own user
    id again): found by bisection, ``a`` comes back as it is, without re-sorting a list
    that grows with the customer's history. ``a`` itself is never modified.
    """
    if not b:
        return a
    if not a:
        return sorted(set(b))[-cap:] if cap else sorted(set(b))
    out = a
    for x in b:
        i = bisect_left(out, x)
        if i == len(out) or out[i] != x:
            if out is a:
                out = a.copy()
            out.insert(i, x)
    return out[-cap:] if cap and len(out) > cap else out


def merge_into(a: Profile, b: Profile) -> Profile:
    """Add ``b``'s contributions to ``a`` in place and return ``a``.

    The one implementation of the profile algebra: ``combine`` calls it on a
    copy, the workers call it on the profile they own (folding one event is
    merging that event's one-event profile). Cost is proportional to ``b``.
    """
    a.version += b.version
    a.events += b.events
    if b.merges:
        a.merges = union_into(a.merges, b.merges)
    for kind, values in b.identifiers.items():
        a.identifiers[kind] = union_into(a.identifiers.get(kind, []), values)
    if b.seen:
        a.seen.update(b.seen)
        if len(a.seen) > MAX_SEEN:
            a.seen = prune_seen(a.seen)
    a.first_seen = _minmax(a.first_seen, b.first_seen, min)
    a.last_seen = _minmax(a.last_seen, b.last_seen, max)
    for k, v in b.channels.items():
        cur = a.channels.get(k)
        a.channels[k] = (
            Span(v.first, v.last, v.count)
            if cur is None
            else Span(min(cur.first, v.first), max(cur.last, v.last), cur.count + v.count)
        )
    add_into(a.counts, b.counts)
    lww_into(a.traits, b.traits)
    for group, traits in b.groups.items():
        lww_into(a.groups.setdefault(group, {}), traits)
    if b.first_touch is not None and (
        a.first_touch is None
        or (b.first_touch.ts, b.first_touch.eid) < (a.first_touch.ts, a.first_touch.eid)
    ):
        a.first_touch = b.first_touch
    lww_into(a.consent, b.consent)
    for session in b.sessions:
        a.sessions = add_session(a.sessions, session)
    a.page_views += b.page_views
    add_into(a.product_views, b.product_views)
    a.cart_adds += b.cart_adds
    a.cart_cents += b.cart_cents
    a.orders += b.orders
    a.revenue_cents += b.revenue_cents
    a.purchase_times = union_into(a.purchase_times, b.purchase_times, MAX_PURCHASE_TIMES)
    spend_into(a.categories, b.categories)
    spend_into(a.brands, b.brands)
    add_into(a.skus_bought, b.skus_bought)
    add_into(a.stores, b.stores)
    for campaign, actions in b.email.items():
        add_into(a.email.setdefault(campaign, {}), actions)
    add_into(a.support, b.support)
    add_into(a.complaint_topics, b.complaint_topics)
    lww_into(a.cases, b.cases)
    a.points_earned += b.points_earned
    a.points_redeemed += b.points_redeemed
    lww_into(a.scores, b.scores)
    lww_into(a.preferences, b.preferences)
    touch_into(a.affinity, b.affinity)
    return a


def combine(a: Profile, b: Profile) -> Profile:
    """The profile of a customer whose events are those of ``a`` and ``b`` together.

    Associative and commutative (up to ``customer_id``, which is ``a``'s): the
    identity-merge survivor keeps its id. Events in both are counted once only if
    their contributions are disjoint, which the identity stage guarantees by
    assigning every event id to exactly one customer.
    """
    return merge_into(clone(a), b)
