"""Preferences: behavioural affinities from the profile, and item-to-item recommendations.

* transparent: category, brand and product affinities read from the profile
  (purchases weigh most, then cart adds, then views); stated preferences from the
  preference centre (``preferences.categories``, or the ``preferred_categories`` trait)
  always come first;
* collaborative: item-to-item co-occurrence learned online from every customer's
  recent items (Linden, Smith & York 2003, "Amazon.com recommendations"), scored
  by cosine similarity to the customer's last items, most recent first; items the
  customer already bought are excluded; popularity fills cold starts.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.transforms.profile import Profile, decayed

HISTORY = 50  # recent items per user that pair with a new one
QUERY = 20  # recent items that vote for candidates
DECAY = 0.9  # weight of the n-th most recent item: DECAY ** n
NEIGHBOURS = 50  # most similar items kept per item (Linden et al.: a similar-items table)
REFRESH = 1_000  # lessons after which an item's similar-items list is computed again
_RUNTIME = ("_ranked", "_similar", "_ids", "_names")  # caches rebuilt after a restore


def _top(values: np.ndarray, name_of: Callable[[int], str], n: int) -> list[int]:
    """Positions of the ``n`` largest values, greatest first; ties by greater name."""
    if len(values) > n:
        cut = np.partition(values, len(values) - n)[len(values) - n]
        candidates: list[int] = np.flatnonzero(values >= cut).tolist()  # ties at the edge too
    else:
        candidates = list(range(len(values)))
    scored: list[float] = values[candidates].tolist() if candidates else []
    ranked = sorted(
        zip(scored, candidates, strict=True), key=lambda sc: (sc[0], name_of(sc[1])), reverse=True
    )
    return [c for _s, c in ranked[:n]]


@dataclass
class CoOccurrence:
    co: dict[str, dict[str, int]] = field(default_factory=dict)  # plain dicts: picklable
    count: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)
    learned: int = 0

    def learn(self, user: str, item: str) -> None:
        recent = self.history.setdefault(user, [])
        if item in recent[-HISTORY:]:
            recent.remove(item)
        else:
            row = self.co.setdefault(item, {})
            for other in set(recent[-HISTORY:]):
                row[other] = row.get(other, 0) + 1
                col = self.co.setdefault(other, {})
                col[item] = col.get(item, 0) + 1
            self.count[item] = self.count.get(item, 0) + 1
        recent.append(item)
        if len(recent) > 4 * HISTORY:
            del recent[: len(recent) - HISTORY]
        self.learned += 1

    def popular(self, k: int, exclude: set[str]) -> list[str]:
        need = k + len(exclude)
        # Ranked once per state of the counts (a worker scores a whole batch between two
        # lessons), not once per scored customer.
        cached: tuple[int, int, list[str]] | None = getattr(self, "_ranked", None)
        if cached is None or cached[0] != self.learned or cached[1] < need:
            n = max(need, 64)
            best = heapq.nlargest(n, self.count.items(), key=lambda kv: (kv[1], kv[0]))
            cached = (self.learned, n, [item for item, _n in best])
            self._ranked = cached
        return [item for item in cached[2][:need] if item not in exclude][:k]

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in _RUNTIME}

    def _id(self, item: str) -> int:
        """A process-local number for an item (runtime only: rebuilt after a restore)."""
        ids: dict[str, int] = self.__dict__.setdefault("_ids", {})
        names: list[str] = self.__dict__.setdefault("_names", [])
        n = ids.get(item)
        if n is None:
            n = ids[item] = len(names)
            names.append(item)
        return n

    def _neighbours(self, item: str) -> tuple[np.ndarray, np.ndarray]:
        """The item's ``NEIGHBOURS`` most similar items (numbers, cosine similarities).

        Recomputed once ``REFRESH`` lessons (or a tenth of all lessons, early on) have
        passed since it was last computed, not per query: a customer's recommendations
        then cost a few array operations instead of a pass over every pair.
        """
        cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = self.__dict__.setdefault(
            "_similar", {}
        )
        hit = cache.get(item)
        if hit is not None and self.learned - hit[0] < min(REFRESH, hit[0] // 10 + 1):
            return hit[1], hit[2]
        row = self.co.get(item, {})
        count = self.count
        others = list(row)
        together = np.fromiter(row.values(), dtype=np.float64, count=len(others))
        counts = np.fromiter((count[o] for o in others), dtype=np.int64, count=len(others))
        sims = together / np.sqrt((self.count.get(item, 0) or 1) * counts)
        order = _top(sims, others.__getitem__, NEIGHBOURS)
        idx = np.fromiter((self._id(others[i]) for i in order), dtype=np.int64, count=len(order))
        best = sims[order] if len(order) else np.empty(0)
        cache[item] = (self.learned, idx, best)
        return idx, best

    def recommend(self, recent: list[str], k: int, exclude: set[str]) -> list[str]:
        """Items most similar to the customer's recent ones, most recent weighing most.

        Scores sum ``DECAY ** age * similarity`` over the last ``QUERY`` items, in the
        same order as a per-pair loop would (so the same floats); ties go to the
        greater item name. Items in ``exclude`` never appear; popularity fills up.
        """
        parts = [self._neighbours(item) for item in reversed(recent[-QUERY:])]
        parts = [(idx, sims * DECAY**age) for age, (idx, sims) in enumerate(parts) if len(idx)]
        out: list[str] = []
        if parts:
            idx = np.concatenate([p[0] for p in parts])
            weights = np.concatenate([p[1] for p in parts])
            items, slot = np.unique(idx, return_inverse=True)
            scores = np.bincount(slot, weights=weights)
            names: list[str] = self.__dict__["_names"]
            if exclude:
                ids = self.__dict__["_ids"]
                banned = [ids[e] for e in exclude if e in ids]
                if banned:
                    keep = ~np.isin(items, banned)
                    items, scores = items[keep], scores[keep]
            numbers: list[int] = items.tolist()
            top = _top(scores, lambda i: names[numbers[i]], k)
            out = [names[numbers[i]] for i in top]
        if len(out) < k:
            out += [i for i in self.popular(k, exclude | set(out))][: k - len(out)]
        return out

    def for_user(self, user: str, k: int, exclude: set[str] | None = None) -> list[str]:
        seen = exclude if exclude is not None else set(self.history.get(user, []))
        return self.recommend(self.history.get(user, []), k, seen)


def affinities(
    profile: Profile, now_ms: int | None = None, top: int = 5, full: bool = True
) -> dict[str, list[str]]:
    """Top categories, brands and products; stated preferences lead.

    Categories and brands rank by time-decayed evidence (views 1, cart adds 3,
    purchased lines 5, halving every 30 days); profiles without it fall back to
    purchase counts. ``full=False`` leaves brands and products empty (the scorer,
    per changed profile, needs categories and the stated preferences only).
    """
    cats: dict[str, float] = defaultdict(float)
    brands: dict[str, float] = defaultdict(float)
    if profile.affinity:
        now = now_ms if now_ms is not None else (profile.last_seen or 0)
        for key, touch in profile.affinity.items():
            kind, _, name = key.partition(":")
            if kind == "category":
                cats[name] += decayed(touch, now)
            elif full:
                brands[name] += decayed(touch, now)
    else:
        for name, spend in profile.categories.items():
            cats[name] += 5 * spend.count
        for name, spend in profile.brands.items() if full else ():
            brands[name] += 5.0 * spend.count
    products: dict[str, float] = defaultdict(float)
    for sku, n in profile.product_views.items() if full else ():
        products[sku] += n
    for sku, n in profile.skus_bought.items() if full else ():
        products[sku] += 5 * n
    stated = profile.preferences.get("categories") or profile.traits.get("preferred_categories")
    stated_list = (
        [str(c) for c in stated.value] if stated and isinstance(stated.value, list) else []
    )

    def rank(d: dict[str, float]) -> list[str]:
        return [k for k, _v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]

    excluded = profile.preferences.get("excluded_categories")
    excluded_set = (
        {str(c) for c in excluded.value} if excluded and isinstance(excluded.value, list) else set()
    )
    categories = stated_list + [c for c in rank(cats) if c not in stated_list]
    categories = [c for c in categories if c not in excluded_set]
    return {
        "categories": categories[:top],
        "excluded": sorted(excluded_set),
        "brands": rank(brands),
        "products": rank(products),
        "stated": stated_list,
    }
