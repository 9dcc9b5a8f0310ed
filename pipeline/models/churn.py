"""Online churn risk with delayed labels, in event time (river).

A snapshot of a customer's features asks "will they buy again before the
silence runs out?". Snapshots are taken at every purchase and then every
``step_days`` of event time while the customer stays silent. The answer arrives
late, from an event-time timer when the silence has passed: churned if no
purchase came in between -- so customers who never come back still teach the
model. Before learning from an answer the model predicts it, which gives honest
prequential metrics (rolling ROC AUC, log loss) and an error stream that ADWIN
watches for drift.

The silence is per customer: ``multiple`` x their mean gap between purchases,
clamped to ``[min_days, fallback_days]``; a one-time buyer gets ``fallback_days``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from river import compose, drift, linear_model, metrics, optim, preprocessing

from pipeline.models.clv import DAY_MS
from pipeline.models.features import FEATURES, age, features, mean_gap_days, reason
from pipeline.transforms.profile import Profile

MODEL_VERSION = "churn-logreg-1"


@dataclass(frozen=True)
class Silence:
    multiple: float = 3.0
    min_days: float = 30.0
    fallback_days: float = 90.0

    def days(self, purchase_times: list[int]) -> float:
        gap = mean_gap_days(purchase_times)
        if gap is None:
            return self.fallback_days
        return min(max(self.multiple * gap, self.min_days), self.fallback_days)


@dataclass(frozen=True)
class Timer:
    """Either a snapshot to take (``label_at`` = 0) or a label to give (``label_at`` > 0)."""

    customer_id: str
    chain: int  # the purchase that started it; a newer purchase makes it stale
    made_at: int
    x: tuple[tuple[str, float], ...]


SKEWED = ("recency_days", "recency_over_gap", "frequency", "tenure_days", "mean_gap_days")


def _compress(x: dict[str, float]) -> dict[str, float]:
    """log1p of the long-tailed counts and durations: a linear model fits them far better."""
    return {k: math.log1p(max(v, 0.0)) if k in SKEWED else v for k, v in x.items()}


def _new_model() -> compose.Pipeline:
    return compose.Pipeline(
        compose.FuncTransformer(_compress),
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.005), l2=1e-4),
    )


@dataclass
class ChurnModel:
    """Snapshots after every purchase and every ``step_days`` of silence after it.

    Snapshots keep being taken while a customer is silent (features aged in event
    time), so the model sees customers at every stage of going quiet, not only on
    the day they bought -- which is when it is asked about them later.
    """

    silence: Silence = field(default_factory=Silence)
    step_days: float = 30.0
    max_silent_days: float = 365.0
    model: compose.Pipeline = field(default_factory=_new_model)
    last_purchase: dict[str, int] = field(default_factory=dict)
    chain: dict[str, int] = field(default_factory=dict)
    horizon: dict[str, float] = field(default_factory=dict)  # silence days, per customer
    timers: list[tuple[int, int, int, Timer]] = field(default_factory=list)
    seq: int = 0
    clock: int = 0  # event time, ms: the largest seen
    learned: int = 0
    churned: int = 0
    auc: Any = field(default_factory=metrics.ROCAUC)
    logloss: Any = field(default_factory=metrics.LogLoss)
    recent_auc: Any = field(default_factory=lambda: metrics.RollingROCAUC(window_size=2000))
    adwin: Any = field(default_factory=lambda: drift.ADWIN(delta=0.002))
    drifts: int = 0

    # --- learning from the stream -------------------------------------------------

    def _push(self, at: int, label_at: int, timer: Timer) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (at, self.seq, label_at, timer))

    def observe_purchase(self, customer_id: str, profile: Profile, now_ms: int) -> None:
        """Call after a purchase was folded into ``profile``."""
        self.advance(now_ms)
        self.last_purchase[customer_id] = max(self.last_purchase.get(customer_id, 0), now_ms)
        chain = self.chain.get(customer_id, 0) + 1
        self.chain[customer_id] = chain
        self.horizon[customer_id] = self.silence.days(profile.purchase_times)
        x = features(profile, now_ms)
        self._snapshot(Timer(customer_id, chain, now_ms, tuple(sorted(x.items()))), now_ms)

    def _snapshot(self, origin: Timer, now_ms: int) -> None:
        """Ask the question at ``now_ms`` and schedule the next snapshot of this silence."""
        x = age(dict(origin.x), (now_ms - origin.made_at) / DAY_MS)
        cid = origin.customer_id
        label_at = now_ms + int(self.horizon[cid] * DAY_MS)
        self._push(label_at, label_at, Timer(cid, origin.chain, now_ms, tuple(sorted(x.items()))))
        if (now_ms - origin.made_at) / DAY_MS + self.step_days <= self.max_silent_days:
            self._push(now_ms + int(self.step_days * DAY_MS), 0, origin)

    def advance(self, now_ms: int) -> int:
        """Move event time forward: take due snapshots, give due labels."""
        self.clock = max(self.clock, now_ms)
        labelled = 0
        while self.timers and self.timers[0][0] < self.clock:
            at, _seq, label_at, timer = heapq.heappop(self.timers)
            cid = timer.customer_id
            if label_at:
                churned = self.last_purchase.get(cid, 0) <= timer.made_at
                self._learn(dict(timer.x), churned=churned)
                labelled += 1
            elif self.chain.get(cid) == timer.chain:
                self._snapshot(timer, at)  # still silent: ask again, a month later
        return labelled

    def _learn(self, x: dict[str, float], churned: bool) -> None:
        p = self.model.predict_proba_one(x).get(True, 0.5)
        self.auc.update(churned, p)
        self.recent_auc.update(churned, p)
        self.logloss.update(churned, p)
        eps = 1e-6
        loss = -math.log(max(p if churned else 1 - p, eps))
        self.adwin.update(loss)
        if self.adwin.drift_detected:
            self.drifts += 1
        self.model.learn_one(x, churned)
        self.learned += 1
        self.churned += int(churned)

    # --- scoring -----------------------------------------------------------------

    def predict(self, profile: Profile, now_ms: int, top: int = 3) -> dict[str, Any]:
        """Churn probability, the features pushing it up most, and the model version."""
        x = features(profile, now_ms)
        p = float(self.model.predict_proba_one(x).get(True, 0.5))
        scaled = self.model["StandardScaler"].transform_one(_compress(x))
        weights = self.model["LogisticRegression"].weights
        pushes = sorted(
            ((weights.get(k, 0.0) * scaled.get(k, 0.0), k) for k in FEATURES), reverse=True
        )
        # A customer nothing pushes towards churn still gets a reason a marketer can read.
        reasons = [reason(k, x) for push, k in pushes[:top] if push > 0] or [
            "no behaviour raises the risk above the average customer's"
        ]
        return {"churn_risk": p, "reasons": reasons, "model_version": self.version}

    @property
    def version(self) -> str:
        return f"{MODEL_VERSION}+{self.learned}"

    def stats(self) -> dict[str, float | int]:
        return {
            "labels_learned": self.learned,
            "churned_share": self.churned / self.learned if self.learned else 0.0,
            "rolling_auc": float(self.recent_auc.get()),
            "auc": float(self.auc.get()),
            "log_loss": float(self.logloss.get()),
            "drift_alarms": self.drifts,
            "pending_timers": len(self.timers),
        }
