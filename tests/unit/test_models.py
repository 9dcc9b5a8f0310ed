"""Models: BG/NBD likelihood and predictions, churn label timing, features, checkpoints, recs."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import msgspec
import numpy as np
import pytest

from pipeline.bench.workload import purchase_history
from pipeline.config import Settings
from pipeline.events import Event
from pipeline.models import checkpoint
from pipeline.models.churn import ChurnModel, Silence
from pipeline.models.clv import (
    DAY_MS,
    BgNbd,
    GammaGamma,
    Rfm,
    bgnbd_log_likelihood,
    fit_bgnbd,
)
from pipeline.models.features import age, features, rfm
from pipeline.models.recommend import CoOccurrence, affinities
from pipeline.models.scorer import MIN_LABELS, Scorer
from pipeline.transforms.fold import fold, fold_into
from pipeline.transforms.profile import Lww, Profile

decoder = msgspec.json.Decoder(Event)
T0 = 1_700_000_000_000


def test_bgnbd_log_likelihood_matches_hand_computed_values():
    params = np.array([1.0, 1.0, 1.0, 1.0])
    # x = 0, T = 10: ln (alpha / (alpha + T)) ** r = -ln 11
    ll0 = bgnbd_log_likelihood(params, np.array([0.0]), np.array([0.0]), np.array([10.0]))
    assert ll0[0] == pytest.approx(-math.log(11), abs=1e-9)
    # x = 2, t_x = 5, T = 10: ln 2 - ln 3 + ln(11^-3 + 2^-1 6^-3), worked out by hand
    ll2 = bgnbd_log_likelihood(params, np.array([2.0]), np.array([5.0]), np.array([10.0]))
    assert ll2[0] == pytest.approx(math.log(2 / 3 * (11**-3 + 0.5 * 6**-3)), abs=1e-9)


def test_bgnbd_conditional_expectation_matches_the_paper():
    # Fader, Hardie & Lee (2005), CDNOW in weeks: a customer with x=2, t_x=30.43, T=38.86
    # is expected to make 1.226 purchases in the next 39 weeks.
    model = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)
    c = Rfm(x=2, t_x=30.43, T=38.86, m=0.0)
    assert model.expected_purchases(c, 39) == pytest.approx(1.226, abs=0.01)
    assert 0 < model.p_alive(c) < 1
    assert model.p_alive(Rfm(0, 0, 10, 0)) == 1.0


def test_bgnbd_fit_recovers_parameters_of_simulated_customers():
    rng = np.random.default_rng(1)
    truth = BgNbd(r=0.5, alpha=10.0, a=0.8, b=2.5)
    stats = []
    for _ in range(4000):
        lam = rng.gamma(truth.r, 1 / truth.alpha)
        p = rng.beta(truth.a, truth.b)
        T, t, x, t_x = 100.0, 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / lam)
            if t > T:
                break
            x, t_x = x + 1, t
            if rng.random() < p:
                break
        stats.append(Rfm(x, t_x, T, 10.0))
    fitted = fit_bgnbd(stats)
    assert fitted.r == pytest.approx(truth.r, rel=0.25)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(0.8 / 3.3, rel=0.25)


def test_gamma_gamma_shrinks_towards_the_population_mean():
    gg = GammaGamma(p=6.0, q=4.0, v=15.0)
    population = gg.p * gg.v / (gg.q - 1)
    few = gg.expected_spend(Rfm(1, 10, 20, 100.0))
    many = gg.expected_spend(Rfm(50, 10, 20, 100.0))
    assert population < few < many < 100.0


def pos(i: int, day: float, cents: int = 1000) -> Event:
    doc = {
        "type": "pos_transaction",
        "messageId": f"m{i}",
        "transactionId": f"t{i}",
        "storeId": "s1",
        "loyaltyId": "L1",
        "identities": {"loyalty_id": "L1"},
        "timestamp": msgspec.json.encode(T0 + int(day * DAY_MS)).decode(),
        "items": [{"sku": f"sku{i % 3}", "category": "vinyl", "price": cents / 100}],
        "total": cents / 100,
    }
    doc["timestamp"] = (
        __import__("datetime")
        .datetime.fromtimestamp((T0 + day * DAY_MS) / 1000, __import__("datetime").UTC)
        .isoformat()
    )
    return decoder.decode(msgspec.json.encode(doc))


def test_features_from_a_folded_profile_and_ageing():
    p = Profile(customer_id="c")
    for i, day in enumerate([0, 10, 30]):
        fold_into(p, pos(i, day))
    x = features(p, T0 + 40 * DAY_MS)
    assert x["frequency"] == 3
    assert x["recency_days"] == pytest.approx(10)
    assert x["mean_gap_days"] == pytest.approx(15)
    assert x["recency_over_gap"] == pytest.approx(10 / 15)
    later = age(x, 20)
    assert later["recency_days"] == pytest.approx(30)
    assert later["recency_over_gap"] == pytest.approx(2.0)
    assert rfm(p, T0 + 40 * DAY_MS) == Rfm(x=2, t_x=30, T=40, m=10.0)


def test_churn_label_only_after_the_silence_in_event_time():
    model = ChurnModel(silence=Silence(multiple=1e9, min_days=30, fallback_days=30), step_days=1e9)
    p = fold(Profile(customer_id="c"), pos(1, 0))
    model.observe_purchase("c", p, T0)
    model.advance(T0 + 29 * DAY_MS)
    assert model.learned == 0  # 29 days of silence: no answer yet
    model.advance(T0 + 31 * DAY_MS)
    assert model.learned == 1 and model.churned == 1
    # A purchase within the silence answers "stayed" when the window closes.
    p2 = fold(Profile(customer_id="d"), pos(2, 40))
    model.observe_purchase("d", p2, T0 + 40 * DAY_MS)
    p2 = fold(p2, pos(3, 50))
    model.observe_purchase("d", p2, T0 + 50 * DAY_MS)
    model.advance(T0 + 71 * DAY_MS)
    assert model.learned == 2 and model.churned == 1
    model.advance(T0 + 81 * DAY_MS)  # the second purchase's own window ran out
    assert model.learned == 3 and model.churned == 2


def test_silent_customers_keep_being_asked_while_they_are_away():
    model = ChurnModel(silence=Silence(1e9, 30, 30), step_days=30, max_silent_days=90)
    model.observe_purchase("c", fold(Profile(customer_id="c"), pos(1, 0)), T0)
    model.advance(T0 + 200 * DAY_MS)
    assert model.learned == 4 and model.churned == 4  # asked on days 0, 30, 60 and 90


def test_churn_model_learns_who_comes_back_and_gives_reasons():
    settings = Settings()
    scorer = Scorer(refit_every=100)
    profiles: dict[str, Profile] = {}
    for rec in purchase_history(settings, 400, days=500, seed=4):
        event = decoder.decode(rec.value)
        cid = event.identities["loyalty_id"]
        p = profiles.setdefault(cid, Profile(customer_id=cid))
        if fold_into(p, event):
            scorer.observe(p, event)
    stats = scorer.churn.stats()
    assert stats["labels_learned"] > 500
    assert stats["auc"] > 0.6  # prequential: predicted before each label was learned
    assert scorer.clv is not None
    some = next(iter(profiles.values()))
    scorer.score(some)
    assert 0 <= some.scores["churn_risk"].value <= 1
    assert isinstance(some.scores["churn_reasons"].value, list)
    assert some.scores["lifetime_value"].value >= 0
    assert not set(some.scores["recommendations"].value) & set(some.skus_bought)


def _learned_history(scorer: Scorer) -> None:
    profiles: dict[str, Profile] = {}
    for rec in purchase_history(Settings(), 200, days=500, seed=4):
        event = decoder.decode(rec.value)
        cid = event.identities["loyalty_id"]
        p = profiles.setdefault(cid, Profile(customer_id=cid))
        if fold_into(p, event):
            scorer.observe(p, event)


def test_a_worker_fits_lifetime_value_on_a_thread_at_most_once_per_interval(tmp_path: Path):
    scorer = Scorer(refit_every=50, background_fits=True, refit_min_s=3600)
    _learned_history(scorer)
    fit = scorer.__dict__["_fit_thread"]
    assert fit.name == "clv-fit"
    fit.join(timeout=60)
    assert scorer.clv is not None  # landed from the thread
    first = scorer.clv
    assert scorer.purchases > 4 * 50  # due several times, yet one fit within the hour
    scorer.refit()
    assert scorer.__dict__["_fit_thread"] is fit and scorer.clv is first
    # the thread is not state: the scorer checkpoints while a fit runs
    checkpoint.save(tmp_path / "w.pkl", scorer, {}, scorer.summary())
    restored = checkpoint.load(tmp_path / "w.pkl")
    assert restored is not None and "_fit_thread" not in restored.state.__dict__
    assert restored.state.clv == first


def test_in_line_fits_give_the_same_lifetime_value_as_a_thread():
    inline, threaded = Scorer(refit_every=50), Scorer(refit_every=50, background_fits=True)
    _learned_history(inline)
    _learned_history(threaded)
    threaded.__dict__["_fit_thread"].join(timeout=60)
    threaded.refit()  # the last due fit may have been skipped while one ran
    threaded.__dict__["_fit_thread"].join(timeout=60)
    inline.refit()
    assert inline.clv is not None and threaded.clv is not None
    # Same data, same optimiser: equal up to numpy's SIMD rounding (array alignment differs).
    for ours, theirs in (
        (threaded.clv.bgnbd, inline.clv.bgnbd),
        (threaded.clv.gamma_gamma, inline.clv.gamma_gamma),
    ):
        assert dataclasses.asdict(ours) == pytest.approx(dataclasses.asdict(theirs), rel=1e-3)


def test_no_fit_starts_without_repeat_buyers():
    scorer = Scorer(refit_every=10, background_fits=True)
    for i in range(300):  # one purchase each: nothing to fit BG/NBD on
        p = Profile(customer_id=f"c{i}")
        scorer.observe(fold(p, pos(i, 0)), pos(i, 0))
    assert scorer.clv is None and "_fit_thread" not in scorer.__dict__


def test_checkpoint_round_trip(tmp_path: Path):
    scorer = Scorer()
    p = fold(Profile(customer_id="c"), pos(1, 0))
    scorer.observe(p, pos(1, 0))
    path = tmp_path / "w1.pkl"
    checkpoint.save(path, scorer, {"crm.events.by_customer:0": 42}, scorer.summary())
    restored = checkpoint.load(path)
    assert restored is not None
    assert restored.offsets == {"crm.events.by_customer:0": 42}
    assert restored.state.churn.last_purchase == scorer.churn.last_purchase
    assert restored.state.churn.predict(p, T0) == scorer.churn.predict(p, T0)
    assert checkpoint.summaries(tmp_path)[0]["churn"]["pending_timers"] > 0
    assert not list(tmp_path.glob("*.tmp"))


def _write_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj))


def test_a_checkpoint_from_before_formats_loads_migrated_with_added_fields_filled(
    tmp_path: Path,
):
    scorer = Scorer()
    p = fold(Profile(customer_id="c"), pos(1, 0))
    scorer.observe(p, pos(1, 0))
    for added in ("recs_due", "sampled_at", "min_labels"):  # fields older scorers lacked
        del scorer.__dict__[added]
    old = checkpoint.Checkpoint.__new__(checkpoint.Checkpoint)  # as format 1 pickled it
    old.__dict__.update(
        state=scorer, offsets={"t:0": 7}, versions=checkpoint.versions(), written_at="then"
    )
    assert "format" not in old.__dict__
    path = tmp_path / "w1.pkl"
    _write_pickle(path, old)

    restored = checkpoint.load(path)

    assert restored is not None and restored.format == checkpoint.FORMAT
    assert restored.offsets == {"t:0": 7}
    state = restored.state
    assert state.recs_due == {} and state.sampled_at == {} and state.min_labels == MIN_LABELS
    state.observe(p, pos(2, 3))  # the migrated models work as a fresh one would
    state.score(p)
    assert "top_categories" in p.scores


def test_a_checkpoint_from_a_newer_format_is_ignored(tmp_path: Path):
    path = tmp_path / "w1.pkl"
    checkpoint.save(path, Scorer(), {}, Scorer().summary())
    newer = pickle.loads(path.read_bytes())
    newer.format = checkpoint.FORMAT + 1
    _write_pickle(path, newer)
    assert checkpoint.load(path) is None


def test_every_older_checkpoint_format_has_a_migration_step():
    assert set(checkpoint.MIGRATIONS) == set(range(1, checkpoint.FORMAT))


def test_cooccurrence_recommends_what_similar_customers_bought_not_what_you_own():
    model = CoOccurrence()
    for u in range(20):
        model.learn(f"u{u}", "guitar")
        model.learn(f"u{u}", "strings")
        if u % 2:
            model.learn(f"u{u}", "picks")
    for u in range(30):
        model.learn(f"x{u}", "socks")  # the most popular item overall
    model.learn("me", "guitar")
    recs = model.for_user("me", 3)
    assert recs[:2] == ["strings", "picks"]
    assert "guitar" not in recs
    assert model.popular(1, set()) == ["socks"]


def test_stated_preferences_lead_the_affinities():
    p = Profile(customer_id="c")
    for i in range(3):
        fold_into(p, pos(i, i))
    p.traits["preferred_categories"] = Lww(["jazz"], T0, "pref")
    prefs = affinities(p)
    assert prefs["categories"][:2] == ["jazz", "vinyl"]


def test_affinities_decay_with_time_and_excluded_categories_drop():
    from datetime import UTC, datetime, timedelta

    from pipeline.events import LineItem, PosTransaction, Track
    from pipeline.transforms.profile import decayed

    start = datetime(2026, 1, 1, tzinfo=UTC)
    p = Profile(customer_id="c")
    # two shoe purchases long ago outweigh three recent beauty views by count...
    for i in range(2):
        fold_into(
            p,
            PosTransaction(
                message_id=f"o{i}",
                loyalty_id="L",
                transaction_id=f"o{i}",
                store_id="s",
                timestamp=start + timedelta(days=i),
                items=[LineItem(sku="s", category="shoes", price=10)],
                total=10,
                identities={"loyalty_id": "L"},
            ),
        )
    for i in range(3):
        fold_into(
            p,
            Track(
                message_id=f"v{i}",
                event="Product Viewed",
                anonymous_id="a",
                timestamp=start + timedelta(days=120 + i),
                properties={"sku": "b", "category": "beauty"},
                identities={"anonymous_id": "a"},
            ),
        )
    assert p.affinity["category:shoes"].weight == 10 and p.affinity["category:beauty"].weight == 3
    now = int((start + timedelta(days=123)).timestamp() * 1000)
    # ...but 120 days are four half-lives: recent interest wins
    assert decayed(p.affinity["category:shoes"], now) < decayed(p.affinity["category:beauty"], now)
    assert affinities(p, now)["categories"][:2] == ["beauty", "shoes"]
    p.preferences["excluded_categories"] = Lww(["beauty"], T0, "pref")
    assert affinities(p, now)["categories"] == ["shoes"]


def _history_until(cut_days_before_end: int, min_labels: int):  # type: ignore[no-untyped-def]
    """Fold 500 days of receipts up to a cut; return scorer, profiles, cut and what came after."""
    from pipeline.transforms.fold import event_time_ms

    events = [decoder.decode(r.value) for r in purchase_history(Settings(), 600, 500, seed=4)]
    cut = event_time_ms(events[-1]) - cut_days_before_end * DAY_MS
    scorer = Scorer(refit_every=100, min_labels=min_labels)
    profiles: dict[str, Profile] = {}
    after: dict[str, list[int]] = {}
    for e in events:
        cid, t = e.identities["loyalty_id"], event_time_ms(e)
        if t > cut:
            after.setdefault(cid, []).append(t)
            continue
        p = profiles.setdefault(cid, Profile(customer_id=cid))
        if fold_into(p, e):
            scorer.observe(p, e)
    scorer.churn.advance(cut)
    return scorer, profiles, cut, after


def test_the_churn_prior_is_right_on_average_before_the_model_has_learned():
    scorer, profiles, cut, after = _history_until(120, min_labels=10**9)
    predicted, lapsed = [], []
    for cid, p in profiles.items():
        scorer.score(p)
        assert p.scores["churn_source"].value == "prior:bgnbd"
        predicted.append(p.scores["churn_risk"].value)
        horizon = scorer.churn.silence.days(p.purchase_times) * DAY_MS
        lapsed.append(not any(cut < t <= cut + horizon for t in after.get(cid, [])))
    mean_predicted, observed = sum(predicted) / len(predicted), sum(lapsed) / len(lapsed)
    assert abs(mean_predicted - observed) < 0.08, (mean_predicted, observed)
    assert len(set(predicted)) > 100  # a per-customer prior, not a constant
    # BG/NBD is fitted on customers as they are now, not as of their last purchase: some
    # are not alive any more (before the fix, P(alive) was 1 for everyone)
    alive = [scorer.clv.bgnbd.p_alive(rfm(p, cut)) for p in profiles.values()]  # type: ignore[union-attr,arg-type]
    assert min(alive) < 0.2 and max(alive) > 0.9


def test_churn_risk_comes_from_the_model_once_it_learned_enough_and_never_from_nothing():
    scorer, profiles, _cut, _after = _history_until(120, min_labels=200)
    p = next(iter(profiles.values()))
    scorer.score(p)
    assert p.scores["churn_source"].value == "model" and p.scores["churn_labels"].value >= 200
    scorer.clv, scorer.min_labels = None, 10**9  # no fit yet, not enough labels
    scorer.score(p)
    assert p.scores["churn_source"].value == "prior:base-rate"
    assert p.scores["churn_risk"].value == round(scorer.churn.churned / scorer.churn.learned, 4)
    fresh = Scorer()
    buyer = fold(Profile(customer_id="c"), pos(1, 0))
    fresh.score(buyer)
    assert buyer.scores["churn_risk"].value is None and buyer.scores["churn_source"].value == "none"


@dataclasses.dataclass(frozen=True)
class _Inner:
    a: int
    b: int = 5


@dataclasses.dataclass
class _Outer:
    items: dict[str, _Inner]
    rows: list[_Inner]
    extra: list[int] = dataclasses.field(default_factory=list)


def test_added_fields_are_filled_in_frozen_and_contained_dataclasses():
    inner, listed = _Inner(1), _Inner(2)
    outer = _Outer({"x": inner}, [listed])
    for obj, name in ((inner, "b"), (listed, "b"), (outer, "extra")):
        del obj.__dict__[name]  # as if pickled before the field existed
    checkpoint.fill_added_fields(outer)
    assert (inner.b, listed.b, outer.extra) == (5, 5, [])
