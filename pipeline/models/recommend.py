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
import math
from collections import defaultdict
from dataclasses import dataclass, field

from pipeline.transforms.profile import Profile, decayed

HISTORY = 50  # recent items per user that pair with a new one
QUERY = 20  # recent items that vote for candidates
DECAY = 0.9  # weight of the n-th most recent item: DECAY ** n
NEIGHBOURS = 50  # most similar items kept per item (Linden et al.: a similar-items table)
REFRESH = 1_000  # lessons after which an item's similar-items list is computed again


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
        return {k: v for k, v in self.__dict__.items() if k not in ("_ranked", "_similar")}

    def similar(self, item: str) -> list[tuple[str, float]]:
        """The item's ``NEIGHBOURS`` most similar items with their cosine similarity.

        Recomputed once ``REFRESH`` lessons (or a tenth of all lessons, early on) have
        passed since it was last computed, not per query: a customer's recommendations
        then cost a few hundred multiply-adds instead of a pass over every pair.
        """
        cache: dict[str, tuple[int, list[tuple[str, float]]]] = self.__dict__.setdefault(
            "_similar", {}
        )
        hit = cache.get(item)
        if hit is not None and self.learned - hit[0] < min(REFRESH, hit[0] // 10 + 1):
            return hit[1]
        n_item = self.count.get(item, 0) or 1
        count = self.count
        sims = [
            (other, together / math.sqrt(n_item * count[other]))
            for other, together in self.co.get(item, {}).items()
        ]
        best = heapq.nlargest(NEIGHBOURS, sims, key=lambda kv: (kv[1], kv[0]))
        cache[item] = (self.learned, best)
        return best

    def recommend(self, recent: list[str], k: int, exclude: set[str]) -> list[str]:
        scores: dict[str, float] = defaultdict(float)
        for age, item in enumerate(reversed(recent[-QUERY:])):
            weight = DECAY**age
            for other, similarity in self.similar(item):
                if other not in exclude:
                    scores[other] += weight * similarity
        top = heapq.nlargest(k, scores.items(), key=lambda kv: (kv[1], kv[0]))
        out = [item for item, _s in top]
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
