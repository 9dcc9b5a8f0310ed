"""The models inside a worker: learn from each folded event, score each changed profile.

One ``Scorer`` per worker process (one global churn model, one item-to-item model,
one lifetime-value fit), fed by the profile stage in event order. Scores land in
``profile.scores`` as last-writer-wins values stamped with event time and model
version, so merges and replays keep the newest.

Lifetime value is refitted from the recency/frequency/monetary statistics of the
customers this worker has seen (a capped sample) every ``refit_every`` purchases;
until the first fit there is no lifetime value, only churn and recommendations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pipeline.events import Event, PosTransaction, Track
from pipeline.models.churn import ChurnModel
from pipeline.models.clv import Clv, Rfm, fit_clv
from pipeline.models.features import rfm
from pipeline.models.recommend import CoOccurrence, affinities
from pipeline.transforms.fold import PREFERENCES_EVENT, event_time_ms
from pipeline.transforms.profile import Lww, Profile

SAMPLE = 20_000  # customers kept for lifetime-value fits


def items_of(event: Event) -> list[tuple[str, str | None]]:
    """(product, category) a customer touched in this event: views, cart adds, purchases."""
    if isinstance(event, PosTransaction):
        return [(li.sku, li.category) for li in event.items]
    if isinstance(event, Track):
        props = event.properties
        if event.event in ("Product Viewed", "Product Added"):
            products = [props]
        elif event.event == "Order Completed":
            products = [p for p in props.get("products") or [] if isinstance(p, dict)]
        else:
            return []
        out = []
        for prod in products:
            sku = prod.get("sku") or prod.get("product_id")
            if sku:
                category = prod.get("category")
                out.append((str(sku), str(category) if category else None))
        return out
    return []


def is_purchase(event: Event) -> bool:
    return isinstance(event, PosTransaction) or (
        isinstance(event, Track) and event.event == "Order Completed"
    )


@dataclass
class Scorer:
    churn: ChurnModel = field(default_factory=ChurnModel)
    items: CoOccurrence = field(default_factory=CoOccurrence)
    categories: dict[str, str] = field(default_factory=dict)  # product -> category
    clv: Clv | None = None
    sample: dict[str, Rfm] = field(default_factory=dict)
    purchases: int = 0
    fitted_at: int = 0  # purchases count at the last fit
    refit_every: int = 2_000
    horizon_days: float = 365.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    recs_due: dict[str, bool] = field(default_factory=dict)  # customer -> urgent: items or
    # stated preferences changed since their recommendations were computed
    recs_every_ms: int = 60_000  # a browsing customer's list refreshes at most this often

    def observe(self, profile: Profile, event: Event) -> None:
        t = event_time_ms(event)
        cid = profile.customer_id
        due = self.__dict__.setdefault("recs_due", {})  # absent in older checkpoints
        for sku, category in items_of(event):
            self.items.learn(cid, sku)
            due[cid] = due.get(cid, False)
            if category:
                self.categories[sku] = category
        if is_purchase(event) or (isinstance(event, Track) and event.event == PREFERENCES_EVENT):
            due[cid] = True  # bought items leave the list, stated preferences apply, at once
        if is_purchase(event):
            self.purchases += 1
            self.churn.observe_purchase(cid, profile, t)
            stats = rfm(profile, t)
            if stats is not None:
                if cid in self.sample or len(self.sample) < SAMPLE:
                    self.sample[cid] = stats
                elif self.rng.random() < 0.1:
                    self.sample.pop(self.rng.choice(list(self.sample)))
                    self.sample[cid] = stats
            if self.purchases - self.fitted_at >= self.refit_every or (
                self.clv is None and self.purchases - self.fitted_at >= min(200, self.refit_every)
            ):
                self.refit()
        else:
            self.churn.advance(t)

    def refit(self) -> None:
        self.fitted_at = self.purchases
        fitted = fit_clv(list(self.sample.values()), self.horizon_days)
        if fitted is not None:
            self.clv = fitted

    def score(self, profile: Profile) -> None:
        now = max(self.churn.clock, profile.last_seen or 0)
        stamp = self.churn.version

        def put(name: str, value: Any) -> None:
            profile.scores[name] = Lww(value, now, stamp)

        if profile.orders:
            churn = self.churn.predict(profile, now)
            put("churn_risk", round(churn["churn_risk"], 4))
            put("churn_reasons", churn["reasons"])
            put("model_version", churn["model_version"])
            stats = rfm(profile, now)
            if self.clv is not None and stats is not None:
                value = self.clv.value(stats)
                put("lifetime_value", round(value["lifetime_value"], 2))
                put("expected_purchases", round(value["expected_purchases"], 3))
                put("p_alive", round(value["p_alive"], 4))
        prefs = affinities(profile, now)
        put("top_categories", prefs["categories"])
        # The neighbourhood query is the costly part of scoring: run it when something the
        # customer touched changed, and for plain browsing at most every recs_every_ms.
        due = self.__dict__.setdefault("recs_due", {})
        last = profile.scores.get("recommendations")
        if last is not None:
            urgent = due.get(profile.customer_id)
            if urgent is None or (not urgent and now - last.ts < self.recs_every_ms):
                return
        due.pop(profile.customer_id, None)
        bought = set(profile.skus_bought)
        recent = self.items.history.get(profile.customer_id) or list(profile.product_views)
        recs = self.items.recommend(recent, 20, bought | set(recent[-1:]))
        if prefs["stated"]:  # stated preferences win: their categories first
            stated = set(prefs["stated"])
            recs.sort(key=lambda sku: self.categories.get(sku) not in stated)
        if prefs["excluded"]:  # and excluded categories are never recommended
            excluded = set(prefs["excluded"])
            recs = [sku for sku in recs if self.categories.get(sku) not in excluded]
        put("recommendations", recs[:10])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"churn": self.churn.stats(), "purchases_seen": self.purchases}
        out["items_learned"] = self.items.learned
        if self.clv is not None:
            out["clv"] = {**self.clv.bgnbd.__dict__, **self.clv.gamma_gamma.__dict__}
        return out
