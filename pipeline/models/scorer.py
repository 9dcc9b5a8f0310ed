"""The models inside a worker: learn from each folded event, score each changed profile.

One ``Scorer`` per worker process (one global churn model, one item-to-item model,
one lifetime-value fit), fed by the profile stage in event order. Scores land in
``profile.scores`` as last-writer-wins values stamped with event time and model
version, so merges and replays keep the newest.

Lifetime value is refitted from the recency/frequency/monetary statistics of the
customers this worker has seen (a capped sample) every ``refit_every`` purchases;
until the first fit there is no lifetime value, only churn and recommendations. A fit
on the full sample takes seconds (about 2 s for 20,000 CDNOW customers), so a worker
runs it on a thread (``background_fits``), at most once per ``refit_min_s``, and keeps
scoring with the previous fit meanwhile; tests and evaluations fit in line.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.events import Event, PosTransaction, Track
from pipeline.logs import get_logger
from pipeline.models.churn import ChurnModel
from pipeline.models.clv import DAY_MS, Clv, Rfm, fit_clv, fittable
from pipeline.models.features import rfm
from pipeline.models.recommend import CoOccurrence, affinities
from pipeline.transforms.fold import PREFERENCES_EVENT, event_time_ms
from pipeline.transforms.profile import Lww, Profile

SAMPLE = 20_000  # customers kept for lifetime-value fits
MIN_LABELS = 500  # churn labels the model learns before its answers replace the prior
BASE_RATE_LABELS = 20  # labels before the observed churn share is a usable prior

log = get_logger("models")


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
    sampled_at: dict[str, int] = field(default_factory=dict)  # event time each was recorded
    purchases: int = 0
    fitted_at: int = 0  # purchases count at the last fit
    refit_every: int = 2_000
    horizon_days: float = 365.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    recs_due: dict[str, bool] = field(default_factory=dict)  # customer -> urgent: items or
    # stated preferences changed since their recommendations were computed
    recs_every_ms: int = 60_000  # a browsing customer's list refreshes at most this often
    min_labels: int = MIN_LABELS  # CRM_CHURN_MIN_LABELS
    background_fits: bool = False  # fit lifetime value on a thread (a worker's event loop)
    refit_min_s: float = 0.0  # wall-clock seconds between two background fits

    def __getstate__(self) -> dict[str, Any]:
        # A fit in flight (its thread, its start time) is not state to checkpoint.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_fit")}

    def observe(self, profile: Profile, event: Event) -> None:
        t = event_time_ms(event)
        cid = profile.customer_id
        due = self.recs_due
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
                at = self.sampled_at
                if cid in self.sample or len(self.sample) < SAMPLE:
                    self.sample[cid], at[cid] = stats, t
                elif self.rng.random() < 0.1:
                    gone = self.rng.choice(list(self.sample))
                    self.sample.pop(gone)
                    at.pop(gone, None)
                    self.sample[cid], at[cid] = stats, t
            if self.purchases - self.fitted_at >= self.refit_every or (
                self.clv is None and self.purchases - self.fitted_at >= min(200, self.refit_every)
            ):
                self.refit()
        else:
            self.churn.advance(t)

    def refit(self) -> None:
        """Fit lifetime value on the sample as of now, not as of each customer's last purchase.

        A customer's statistics are recorded when they buy; by the fit, T (their age) has
        grown by the silence since. Without that, everyone looks like they just bought,
        BG/NBD sees no dropout at all and P(alive) is 1 for every customer.
        """
        self.fitted_at = self.purchases
        if not fittable(self.sample.values()):  # cheap: nothing to fit on yet
            return
        if not self.background_fits:
            self._fit(self.sample, self.sampled_at, self.churn.clock)
            return
        running: threading.Thread | None = self.__dict__.get("_fit_thread")
        started: float = self.__dict__.get("_fit_started", -math.inf)
        if (running is not None and running.is_alive()) or (
            time.monotonic() - started < self.refit_min_s
        ):
            return  # the next due purchase asks again
        # Copies taken here, on the caller's thread: the sample keeps changing meanwhile.
        args = (dict(self.sample), dict(self.sampled_at), self.churn.clock)
        thread = threading.Thread(target=self._fit, args=args, name="clv-fit", daemon=True)
        self.__dict__["_fit_thread"], self.__dict__["_fit_started"] = thread, time.monotonic()
        thread.start()

    def _fit(self, sample: dict[str, Rfm], sampled_at: dict[str, int], now: int) -> None:
        try:
            stats = [
                Rfm(s.x, s.t_x, s.T + max(0, now - sampled_at.get(cid, now)) / DAY_MS, s.m)
                for cid, s in sample.items()
            ]
            fitted = fit_clv(stats, self.horizon_days)
        except Exception as exc:  # a failed fit keeps the previous one
            log.warning("lifetime value fit failed", error=f"{type(exc).__name__}: {exc}")
            return
        if fitted is not None:
            self.clv = fitted  # one assignment: scoring sees the old fit or the new one

    def score(self, profile: Profile) -> None:
        now = max(self.churn.clock, profile.last_seen or 0)
        stamp = self.churn.version

        def put(name: str, value: Any) -> None:
            profile.scores[name] = Lww(value, now, stamp)

        if profile.orders:
            churn = self.churn_risk(profile, now)
            risk = churn["churn_risk"]
            put("churn_risk", None if risk is None else round(risk, 4))
            put("churn_reasons", churn["reasons"])
            put("churn_source", churn["source"])
            put("churn_labels", self.churn.learned)
            put("model_version", churn["model_version"])
            stats = rfm(profile, now)
            if self.clv is not None and stats is not None:
                value = self.clv.value(stats)
                put("lifetime_value", round(value["lifetime_value"], 2))
                put("expected_purchases", round(value["expected_purchases"], 3))
                put("p_alive", round(value["p_alive"], 4))
        prefs = affinities(profile, now, full=False)
        put("top_categories", prefs["categories"])
        # The neighbourhood query is the costly part of scoring: run it when something the
        # customer touched changed, and for plain browsing at most every recs_every_ms.
        due = self.recs_due
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

    def churn_risk(self, profile: Profile, now: int) -> dict[str, Any]:
        """The model's answer once it learned ``min_labels`` labels; a prior before that.

        The prior is right on average rather than a constant: BG/NBD's probability of no
        purchase within the customer's own silence horizon (the question the model's
        labels answer), fitted on the population; the observed churn share while there
        is no fit yet; and no risk at all (``None``) while there is neither.
        """
        min_labels = self.min_labels
        learned = self.churn.learned
        if learned >= min_labels:
            return {**self.churn.predict(profile, now), "source": "model"}
        progress = f"{learned} of {min_labels} labels learned"
        stats = rfm(profile, now)
        if self.clv is not None and stats is not None:
            days = self.churn.silence.days(profile.purchase_times)
            p = 1.0 - self.clv.bgnbd.p_purchase(stats, days)
            why = f"prior: all customers' purchase rhythms ({progress})"
            if math.isfinite(p):
                return self._prior(min(max(p, 0.0), 1.0), why, "prior:bgnbd")
        if learned >= BASE_RATE_LABELS:
            why = f"prior: share of customers who lapsed ({progress})"
            return self._prior(self.churn.churned / learned, why, "prior:base-rate")
        return self._prior(None, f"not enough data yet ({progress})", "none")

    def _prior(self, p: float | None, why: str, source: str) -> dict[str, Any]:
        return {"churn_risk": p, "reasons": [why], "model_version": source, "source": source}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"churn": self.churn.stats(), "purchases_seen": self.purchases}
        out["items_learned"] = self.items.learned
        if self.clv is not None:
            out["clv"] = {**self.clv.bgnbd.__dict__, **self.clv.gamma_gamma.__dict__}
        return out
