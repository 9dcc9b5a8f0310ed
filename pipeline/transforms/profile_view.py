"""What API clients see: the stored profile plus derived marketing fields.

Derived values that depend on "now" (recency) are computed at read time, so a
profile read a week after the last event still says a week.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pipeline.transforms.conditions import Instant, walk
from pipeline.transforms.profile import Profile, decayed

DAY_MS = 24 * 3600 * 1000


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms is not None else None


def _top(spend: dict[str, Any], n: int = 5) -> list[dict[str, Any]]:
    ranked = sorted(spend.items(), key=lambda kv: (-kv[1].cents, kv[0]))[:n]
    return [{"name": k, "purchases": v.count, "revenue": v.cents / 100} for k, v in ranked]


def _affinities(p: Profile, now_ms: int, n: int = 5) -> dict[str, dict[str, float]]:
    """Time-decayed interest per category and brand (views 1, cart 3, purchases 5; 30-day
    half-life), so a segment or rule can ask what someone is into now."""
    out: dict[str, dict[str, float]] = {"categories": {}, "brands": {}}
    ranked = sorted(
        ((k, decayed(t, now_ms)) for k, t in p.affinity.items()), key=lambda kv: (-kv[1], kv[0])
    )
    for key, score in ranked:
        kind, _, name = key.partition(":")
        group = out["categories" if kind == "category" else "brands"]
        if len(group) < n:
            group[name] = round(score, 3)
    return out


def _web(p: Profile, _now: int) -> dict[str, Any]:
    last = p.sessions[-1] if p.sessions else None
    return {
        "sessions": len(p.sessions),
        "page_views": p.page_views,
        "products_viewed": dict(sorted(p.product_views.items(), key=lambda kv: -kv[1])[:20]),
        "cart_adds": p.cart_adds,
        "cart_value": p.cart_cents / 100,
        "last_session": (
            {"start": _iso(last.start), "end": _iso(last.end), "pages": last.pages}
            if last
            else None
        ),
    }


def _purchases(p: Profile, _now: int) -> dict[str, Any]:
    gaps = [b - a for a, b in zip(p.purchase_times, p.purchase_times[1:], strict=False)]
    return {
        "orders": p.orders,
        "revenue": p.revenue_cents / 100,
        "average_order_value": round(p.revenue_cents / p.orders / 100, 2) if p.orders else 0.0,
        "first_purchase": _iso(p.purchase_times[0]) if p.purchase_times else None,
        "last_purchase": _iso(p.purchase_times[-1]) if p.purchase_times else None,
        "mean_days_between_purchases": round(sum(gaps) / len(gaps) / DAY_MS, 2) if gaps else None,
        "top_categories": _top(p.categories),
        "top_brands": _top(p.brands),
        "stores": p.stores,
    }


def _email(p: Profile, _now: int) -> dict[str, Any]:
    totals: dict[str, int] = {}
    for actions in p.email.values():
        for action, n in actions.items():
            totals[action] = totals.get(action, 0) + n
    return {"totals": totals, "campaigns": p.email}


Section = Callable[[Profile, int], Any]
SECTIONS: dict[str, Section] = {
    "customer_id": lambda p, _n: p.customer_id,
    "version": lambda p, _n: p.version,
    "identifiers": lambda p, _n: p.identifiers,
    "traits": lambda p, _n: {k: v.value for k, v in sorted(p.traits.items())},
    "groups": lambda p, _n: {
        g: {k: v.value for k, v in sorted(traits.items())} for g, traits in sorted(p.groups.items())
    },
    "first_touch": lambda p, _n: (
        {**p.first_touch.value, "at": _iso(p.first_touch.ts)} if p.first_touch else None
    ),
    "consent": lambda p, _n: {k: v.value for k, v in sorted(p.consent.items())},
    "first_seen": lambda p, _n: _iso(p.first_seen),
    "last_seen": lambda p, _n: _iso(p.last_seen),
    "channels": lambda p, _n: {
        k: {"first": _iso(v.first), "last": _iso(v.last), "events": v.count}
        for k, v in sorted(p.channels.items())
    },
    "events": lambda p, _n: p.events,
    "web": _web,
    "purchases": _purchases,
    "rfm": lambda p, now: {
        "recency_days": round((now - p.purchase_times[-1]) / DAY_MS, 2)
        if p.purchase_times
        else None,
        "frequency": p.orders,
        "monetary": p.revenue_cents / 100,
    },
    "email": _email,
    "support": lambda p, _n: {
        "contacts": p.support,
        "complaint_topics": p.complaint_topics,
        "open_cases": sum(1 for v in p.cases.values() if str(v.value).endswith(":open")),
    },
    "loyalty": lambda p, _n: {
        "cards": p.identifiers.get("loyalty_id", []),
        "points_earned": p.points_earned,
        "points_redeemed": p.points_redeemed,
        "points_balance": p.points_earned - p.points_redeemed,
        "stage": p.audience.stage if p.audience else None,
        "tier": p.audience.tier if p.audience else None,
    },
    "segments": lambda p, _n: sorted(p.audience.segments) if p.audience else [],
    "scores": lambda p, _n: {k: v.value for k, v in sorted(p.scores.items())},
    "preferences": lambda p, _n: {k: v.value for k, v in sorted(p.preferences.items())},
    "affinities": _affinities,
    "merged_customers": lambda p, _n: [m.split(">", 1)[0] for m in p.merges],
}


def render(p: Profile, now_ms: int) -> dict[str, Any]:
    """The whole view, as ``GET /v1/profiles/...`` answers."""
    return {name: build(p, now_ms) for name, build in SECTIONS.items()}


@lru_cache(maxsize=16_384)
def _instant_of(ms: int) -> Instant:
    return Instant(ms)  # formatting the ISO text is most of its cost; instants recur


def _instant(ms: int | None) -> Instant | None:
    return _instant_of(ms) if ms is not None else None


def _lww(field: str) -> Callable[[Profile, str, Any], Any]:
    def value(p: Profile, key: str, missing: Any) -> Any:
        found = getattr(p, field).get(key)
        return found.value if found is not None else missing

    return value


# Single fields of the view read straight from the profile, equal to what the section
# holds (time fields as Instant: the same ISO text, with its milliseconds kept). Segment
# conditions read a handful of fields per change; building whole sections for them
# (sorting, formatting every date) was most of the cost of deriving an audience.
FIELDS: dict[tuple[str, str], Callable[[Profile], Any]] = {
    ("purchases", "orders"): lambda p: p.orders,
    ("purchases", "revenue"): lambda p: p.revenue_cents / 100,
    ("purchases", "first_purchase"): lambda p: _instant(
        p.purchase_times[0] if p.purchase_times else None
    ),
    ("purchases", "last_purchase"): lambda p: _instant(
        p.purchase_times[-1] if p.purchase_times else None
    ),
    ("purchases", "average_order_value"): lambda p: (
        round(p.revenue_cents / p.orders / 100, 2) if p.orders else 0.0
    ),
    ("web", "sessions"): lambda p: len(p.sessions),
    ("web", "page_views"): lambda p: p.page_views,
    ("web", "cart_adds"): lambda p: p.cart_adds,
    ("web", "cart_value"): lambda p: p.cart_cents / 100,
    ("support", "open_cases"): lambda p: sum(
        1 for v in p.cases.values() if str(v.value).endswith(":open")
    ),
    ("loyalty", "points_earned"): lambda p: p.points_earned,
    ("loyalty", "points_redeemed"): lambda p: p.points_redeemed,
    ("loyalty", "points_balance"): lambda p: p.points_earned - p.points_redeemed,
}
TOP_FIELDS: dict[str, Callable[[Profile], Any]] = {
    "customer_id": lambda p: p.customer_id,
    "events": lambda p: p.events,
    "first_seen": lambda p: _instant(p.first_seen),
    "last_seen": lambda p: _instant(p.last_seen),
}
KEYED: dict[str, Callable[[Profile, str, Any], Any]] = {
    "scores": _lww("scores"),
    "traits": _lww("traits"),
    "consent": _lww("consent"),
    "preferences": _lww("preferences"),
}


class LazyView(dict[str, Any]):
    """The same view, each section built on first access.

    A personalization decision reads a handful of fields; building only those
    keeps the request cheap. Extra keys (``context``) can be set as usual.
    """

    def __init__(self, p: Profile, now_ms: int) -> None:
        super().__init__()
        self._p, self._now = p, now_ms

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or key in SECTIONS

    def __missing__(self, key: str) -> Any:
        build = SECTIONS.get(key)
        if build is None:
            raise KeyError(key)
        value = self[key] = build(self._p, self._now)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 - builds lazily

    def resolve(self, path: tuple[str, ...], missing: Any) -> Any:
        """The value at ``path`` (``missing`` if absent), building no section it can skip."""
        head = path[0]
        if not super().__contains__(head):  # sections set or built already win
            if len(path) == 1:
                top = TOP_FIELDS.get(head)
                if top is not None:
                    return top(self._p)
            else:
                keyed = KEYED.get(head)
                if keyed is not None:
                    value = keyed(self._p, path[1], missing)
                    return value if len(path) == 2 or value is missing else walk(value, path[2:])
                field = FIELDS.get((head, path[1]))
                if field is not None:
                    value = field(self._p)
                    return value if len(path) == 2 else walk(value, path[2:])
        if head not in self:
            return missing
        return walk(self[head], path[1:])
