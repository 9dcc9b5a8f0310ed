"""``crm evaluate``: the worker's model code on a real data set, against classic baselines.

Churn: each transaction becomes a ``pos_transaction`` event folded into a profile
with the pipeline's own ``fold``; the churn model observes every purchase and its
event-time timers exactly as in the worker. At the end of the calibration period
both the streaming model and a BG/NBD fitted on the calibration period predict who
buys again in the holdout.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from pipeline.events import PosTransaction
from pipeline.models.churn import ChurnModel, Silence
from pipeline.models.clv import DAY_MS, Rfm, fit_bgnbd, fit_clv, rfm_from_purchases
from pipeline.models.features import rfm
from pipeline.transforms.fold import fold_into
from pipeline.transforms.profile import Profile
from pipeline.transforms.validate import decode_event


def parse_time(value: str) -> datetime:
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        return datetime.strptime(value, "%Y%m%d").replace(tzinfo=UTC)
    if value.replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(value), UTC)
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def read_transactions(path: Path) -> list[tuple[str, datetime, float]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"customer_id", "timestamp", "amount"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))}")
        rows = []
        for n, row in enumerate(reader, start=2):
            try:
                rows.append(
                    (row["customer_id"].strip(), parse_time(row["timestamp"]), float(row["amount"]))
                )
            except ValueError as exc:
                raise ValueError(f"{path}: row {n}: {exc}") from None
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def _event(i: int, customer: str, when: datetime, amount: float) -> PosTransaction:
    doc = {
        "type": "pos_transaction",
        "messageId": f"eval-{i}",
        "transactionId": f"t{i}",
        "storeId": "eval",
        "loyaltyId": customer,
        "timestamp": when.isoformat(),
        "items": [{"sku": "item", "price": max(amount, 0.0), "quantity": 1}],
        "total": max(amount, 0.0),
    }
    event = decode_event(msgspec.json.encode(doc), PosTransaction)
    assert isinstance(event, PosTransaction)
    return event


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from scipy.stats import rankdata

    pos = y.sum()
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _prob_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": round(_auc(y, p), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
        "log_loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 4),
    }


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Predicted against observed, by decile of the prediction: does 0.3 mean 30%?

    Customers sorted by predicted probability and cut into ``bins`` groups of (nearly)
    equal size; each row has the group's mean prediction and its observed rate. The
    expected calibration error is their size-weighted mean absolute gap.
    """
    order = np.argsort(p, kind="stable")
    rows: list[dict[str, Any]] = []
    gap = 0.0
    for i, idx in enumerate(np.array_split(order, bins), start=1):
        if len(idx) == 0:
            continue
        predicted, observed = float(p[idx].mean()), float(y[idx].mean())
        gap += len(idx) / len(p) * abs(predicted - observed)
        rows.append(
            {
                "decile": i,
                "customers": len(idx),
                "predicted": round(predicted, 4),
                "observed": round(observed, 4),
            }
        )
    return {"deciles": rows, "expected_calibration_error": round(gap, 4)}


def _count_scores(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    return {
        "purchases_mae": round(float(np.mean(np.abs(expected - actual))), 4),
        "purchases_correlation": round(float(np.corrcoef(expected, actual)[0, 1]), 4),
        "predicted_total": round(float(expected.sum()), 1),
        "actual_total": int(actual.sum()),
    }


def evaluate_churn(
    path: Path,
    calibration_end: date,
    holdout_end: date | None = None,
    silence: Silence | None = None,
) -> dict[str, Any]:
    rows = read_transactions(path)
    cal_end = datetime.combine(calibration_end, datetime.max.time(), UTC)
    hold_end = (
        datetime.combine(holdout_end, datetime.max.time(), UTC) if holdout_end else rows[-1][1]
    )
    horizon_days = (hold_end - cal_end).total_seconds() / 86400
    if horizon_days <= 0:
        raise ValueError("the holdout must end after the calibration period")
    model = ChurnModel(silence=silence or Silence())
    profiles: dict[str, Profile] = {}
    start = time.perf_counter()
    learned_events = 0
    for i, (cid, when, amount) in enumerate(rows):
        if when > cal_end:
            break
        profile = profiles.setdefault(cid, Profile(customer_id=cid))
        if fold_into(profile, _event(i, cid, when, amount)):
            model.observe_purchase(cid, profile, _ms(when))
            learned_events += 1
    learn_seconds = time.perf_counter() - start
    now = _ms(cal_end)
    model.advance(now)
    actual: dict[str, int] = defaultdict(int)
    days_seen: dict[str, set[int]] = defaultdict(set)
    for cid, when, _amount in rows:
        if cal_end < when <= hold_end and cid in profiles:
            day = _ms(when) // DAY_MS
            if day not in days_seen[cid]:
                days_seen[cid].add(day)
                actual[cid] += 1
    customers = sorted(profiles)
    y = np.array([1 if actual[c] else 0 for c in customers])
    counts = np.array([actual[c] for c in customers], dtype=float)

    start = time.perf_counter()
    churn_p = []
    for c in customers:
        p = model.predict(profiles[c], now)["churn_risk"]
        # The label window is this customer's silence; stretch it to the holdout length
        # assuming a constant purchase hazard: P(no buy in H) = P(no buy in S) ** (H / S).
        s = model.silence.days(profiles[c].purchase_times)
        churn_p.append(p ** (horizon_days / s))
    predict_seconds = time.perf_counter() - start
    stream_buy = 1.0 - np.array(churn_p)

    stats = [rfm(profiles[c], now) for c in customers]
    known = [s for s in stats if s is not None]
    assert len(known) == len(customers), "every calibration customer has a purchase"
    clv = fit_clv(known, horizon_days)
    if clv is None:
        raise ValueError("not enough repeat customers in the calibration period to fit CLV")
    clv_expected = np.array([clv.bgnbd.expected_purchases(s, horizon_days) for s in known])

    # Baseline: BG/NBD fitted straight from the file, the way the literature does it.
    by_customer: dict[str, list[int]] = defaultdict(list)
    spend: dict[str, float] = defaultdict(float)
    for cid, when, amount in rows:
        if when <= cal_end:
            by_customer[cid].append(_ms(when))
            spend[cid] += amount
    base_stats: list[Rfm] = []
    for c in customers:
        stat = rfm_from_purchases(by_customer[c], spend[c], len(by_customer[c]), now)
        assert stat is not None
        base_stats.append(stat)
    bg = fit_bgnbd(base_stats)
    base_p = np.array([bg.p_purchase(s, horizon_days) for s in base_stats])
    base_expected = np.array([bg.expected_purchases(s, horizon_days) for s in base_stats])
    return {
        "data": str(path),
        "customers": len(customers),
        "transactions_calibration": learned_events,
        "calibration_end": calibration_end.isoformat(),
        "holdout_end": hold_end.date().isoformat(),
        "holdout_days": round(horizon_days, 1),
        "holdout_buyers": int(y.sum()),
        "streaming": {
            **_prob_scores(y, stream_buy),
            **_count_scores(counts, clv_expected),
            "reliability": reliability(y, stream_buy),
            "model_version": model.version,
            "prequential": {
                k: round(v, 4) if isinstance(v, float) else v for k, v in model.stats().items()
            },
            "learn_events_per_second": round(learned_events / learn_seconds, 1),
            "predict_per_second": round(len(customers) / predict_seconds, 1),
        },
        "bgnbd_baseline": {
            **_prob_scores(y, base_p),
            **_count_scores(counts, base_expected),
            "reliability": reliability(y, base_p),
            "params": {k: round(v, 4) for k, v in bg.__dict__.items()},
        },
    }


def _ndcg(rank: int | None) -> float:
    return 1.0 / math.log2(rank + 2) if rank is not None else 0.0


def read_interactions(path: Path) -> list[tuple[datetime, str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "item_id", "timestamp"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))}")
        rows = [
            (parse_time(r["timestamp"]), r["user_id"].strip(), r["item_id"].strip()) for r in reader
        ]
    rows.sort()
    return rows


class ImplicitMF:
    """river's FunkMF on implicit feedback: each interaction a 1, plus sampled 0s.

    Top-N scores every known item with one matrix product over the latent vectors.
    """

    def __init__(self, factors: int = 20, negatives: int = 3, seed: int = 7) -> None:
        from river import optim, reco

        self.model = reco.FunkMF(
            n_factors=factors, optimizer=optim.SGD(0.05), l2=0.01, initializer=None, seed=seed
        )
        self.negatives = negatives
        self.items: list[str] = []
        self.known: set[str] = set()
        self.rng = np.random.default_rng(seed)
        self.seconds = 0.0

    def learn(self, user: str, item: str) -> None:
        t0 = time.perf_counter()
        if item not in self.known:
            self.known.add(item)
            self.items.append(item)
        self.model.learn_one(user, item, 1.0)
        for j in self.rng.integers(0, len(self.items), self.negatives):
            other = self.items[int(j)]
            if other != item:
                self.model.learn_one(user, other, 0.0)
        self.seconds += time.perf_counter() - t0

    def recommend(self, user: str, k: int, exclude: set[str]) -> list[str]:
        if user not in self.model.u_latents or not self.items:
            return []
        matrix = np.array([self.model.i_latents[i] for i in self.items])
        scores = matrix @ self.model.u_latents[user]
        order = np.argsort(-scores)
        out = []
        for idx in order:
            item = self.items[int(idx)]
            if item not in exclude:
                out.append(item)
                if len(out) == k:
                    break
        return out


def evaluate_recs(path: Path, k: int = 10, test_every: int = 10, mf: bool = True) -> dict[str, Any]:
    """Prequential: for every ``test_every``-th interaction of a known user, recommend
    (test), then learn. Hit rate, recall and NDCG at ``k`` against popularity (and
    river matrix factorization, to show whether it helps)."""
    from pipeline.models.recommend import CoOccurrence

    rows = read_interactions(path)
    model = CoOccurrence()
    factors = ImplicitMF() if mf else None
    names = ("cooccurrence", "popularity", *(("matrix_factorization",) if mf else ()))
    scores = {name: {"hits": 0, "ndcg": 0.0} for name in names}
    tests = 0
    rec_seconds = mf_rec_seconds = 0.0
    start = time.perf_counter()
    for n, (_ts, user, item) in enumerate(rows):
        history = model.history.get(user)
        if history and n % test_every == 0:
            seen = set(history)
            if item not in seen:
                t0 = time.perf_counter()
                ranked = {
                    "cooccurrence": model.recommend(history, k, seen),
                    "popularity": model.popular(k, seen),
                }
                rec_seconds += time.perf_counter() - t0
                if factors is not None:
                    t1 = time.perf_counter()
                    ranked["matrix_factorization"] = factors.recommend(user, k, seen)
                    mf_rec_seconds += time.perf_counter() - t1
                tests += 1
                for name, recs in ranked.items():
                    if item in recs:
                        scores[name]["hits"] += 1
                        scores[name]["ndcg"] += _ndcg(recs.index(item))
        model.learn(user, item)
        if factors is not None:
            factors.learn(user, item)
    total = time.perf_counter() - start - mf_rec_seconds - (factors.seconds if factors else 0.0)
    out: dict[str, Any] = {"data": str(path), "interactions": len(rows), "tests": tests, "k": k}
    for name, s in scores.items():
        out[name] = {
            f"hit_rate@{k}": round(s["hits"] / tests, 4) if tests else 0.0,
            f"recall@{k}": round(s["hits"] / tests, 4) if tests else 0.0,
            f"ndcg@{k}": round(s["ndcg"] / tests, 4) if tests else 0.0,
        }
    out["throughput"] = {
        "learn_per_second": round(len(rows) / max(total - rec_seconds, 1e-9), 1),
        "recommend_per_second": round(tests * 2 / max(rec_seconds, 1e-9), 1),
    }
    if factors is not None:
        out["throughput"]["mf_learn_per_second"] = round(len(rows) / max(factors.seconds, 1e-9), 1)
        out["throughput"]["mf_recommend_per_second"] = round(tests / max(mf_rec_seconds, 1e-9), 1)
    return out
