"""Customer lifetime value: BG/NBD (how many more purchases) and Gamma-Gamma (how much each).

Fader, Hardie & Lee (2005) "Counting your customers the easy way" and Fader & Hardie
(2013) "The Gamma-Gamma model of monetary value". Population parameters are fitted
by maximum likelihood (scipy) from per-customer sufficient statistics the profile
keeps; per-customer predictions are closed forms. Time is in days.

Sufficient statistics of one customer (``Rfm``): ``x`` repeat purchases (distinct
purchase days after the first), ``t_x`` days from first to last purchase, ``T``
days from first purchase to now, ``m`` average order value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

DAY_MS = 86_400_000
# Parameters are fitted in log space within e^-6 .. e^9: small samples otherwise drift to
# degenerate corners (b -> infinity, "nobody ever leaves").
BOUNDS = [(-6.0, 9.0)]


@dataclass(frozen=True)
class Rfm:
    x: int
    t_x: float
    T: float
    m: float


def rfm_from_purchases(
    purchase_times_ms: list[int], revenue: float, orders: int, now_ms: int
) -> Rfm | None:
    """Statistics from purchase times (ms) and spend; None for someone who never bought."""
    if not purchase_times_ms or orders <= 0:
        return None
    days = sorted({t // DAY_MS for t in purchase_times_ms})
    first, last = days[0], days[-1]
    return Rfm(
        x=len(days) - 1,
        t_x=float(last - first),
        T=max(float(now_ms // DAY_MS - first), float(last - first)),
        m=revenue / orders,
    )


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, c: Rfm) -> float:
        if c.x == 0:
            return 1.0
        ratio = (self.alpha + c.T) / (self.alpha + c.t_x)
        return float(1.0 / (1.0 + self.a / (self.b + c.x - 1) * ratio ** (self.r + c.x)))

    def expected_purchases(self, c: Rfm, horizon: float) -> float:
        """E[purchases in (T, T + horizon]] given the customer's history."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, T = c.x, c.T
        z = horizon / (alpha + T + horizon)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + horizon)) ** (r + x) * hyp
        alive_term = 1.0
        if x > 0:
            alive_term += a / (b + x - 1) * ((alpha + T) / (alpha + c.t_x)) ** (r + x)
        return float(head * body / alive_term)

    def p_purchase(self, c: Rfm, horizon: float) -> float:
        """P(at least one purchase in the horizon): alive x P(a Poisson event | posterior rate).

        Ignores dropout inside the horizon, so it is an upper bound; used as the
        baseline's probability and for ranking.
        """
        no_buy = ((self.alpha + c.T) / (self.alpha + c.T + horizon)) ** (self.r + c.x)
        return self.p_alive(c) * (1.0 - no_buy)


def bgnbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD (vectorised)."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(stats: list[Rfm], penalizer: float = 0.0) -> BgNbd:
    x = np.array([s.x for s in stats], dtype=float)
    t_x = np.array([s.t_x for s in stats])
    T = np.array([s.T for s in stats])

    def loss(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        return float(
            -bgnbd_log_likelihood(params, x, t_x, T).mean() + penalizer * (params**2).sum()
        )

    res = minimize(
        loss,
        np.log([0.5, 10.0, 0.8, 2.5]),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9},
    )
    r, alpha, a, b = np.exp(res.x)
    return BgNbd(float(r), float(alpha), float(a), float(b))


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    def expected_spend(self, c: Rfm) -> float:
        """Posterior mean order value; falls back to the population mean with no repeats."""
        if c.x == 0:
            return self.p * self.v / (self.q - 1) if self.q > 1 else c.m
        return (self.p * (self.v + c.x * c.m)) / (self.p * c.x + self.q - 1)


def gamma_gamma_log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    p, q, v = params
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + (p * x) * np.log(x)
        - (p * x + q) * np.log(x * m + v)
    )


def fit_gamma_gamma(stats: list[Rfm]) -> GammaGamma:
    """Fitted on repeat customers with positive spend, as the model requires."""
    repeat = [s for s in stats if s.x > 0 and s.m > 0]
    x = np.array([s.x for s in repeat], dtype=float)
    m = np.array([s.m for s in repeat])

    def loss(log_params: np.ndarray) -> float:
        return float(-gamma_gamma_log_likelihood(np.exp(log_params), x, m).mean())

    res = minimize(
        loss,
        np.log([2.0, 3.0, 20.0]),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9},
    )
    p, q, v = np.exp(res.x)
    return GammaGamma(float(p), float(q), float(v))


@dataclass(frozen=True)
class Clv:
    """Both models together: the expected value of a customer over a horizon (days)."""

    bgnbd: BgNbd
    gamma_gamma: GammaGamma
    horizon_days: float = 365.0

    def value(self, c: Rfm) -> dict[str, float]:
        purchases = self.bgnbd.expected_purchases(c, self.horizon_days)
        if not math.isfinite(purchases) or purchases < 0:
            purchases = 0.0
        spend = self.gamma_gamma.expected_spend(c)
        if not math.isfinite(spend) or spend <= 0:
            spend = c.m  # the model cannot say more than the customer's own average
        return {
            "expected_purchases": purchases,
            "p_alive": self.bgnbd.p_alive(c),
            "p_purchase": self.bgnbd.p_purchase(c, self.horizon_days),
            "expected_order_value": spend,
            "lifetime_value": purchases * spend,
        }


def fittable(stats: Iterable[Rfm]) -> bool:
    """Enough customers, and enough who bought again, for a fit to say anything."""
    repeat = 0
    for seen, s in enumerate(stats, 1):
        repeat += s.x > 0
        if seen >= 20 and repeat >= 10:
            return True
    return False


def fit_clv(stats: list[Rfm], horizon_days: float = 365.0) -> Clv | None:
    """Fit both models; None until there is enough data to say anything."""
    if not fittable(stats):
        return None
    return Clv(fit_bgnbd(stats), fit_gamma_gamma(stats), horizon_days)
