"""Per-customer model features, read from the profile at a point in event time.

Pure and cheap: the worker calls it after every purchase, the evaluation calls the
same function on profiles folded from a transactions file.
"""

from __future__ import annotations

import math

from pipeline.models.clv import DAY_MS, Rfm, rfm_from_purchases
from pipeline.transforms.profile import Profile

FEATURES = (
    "recency_days",
    "recency_over_gap",
    "frequency",
    "log_monetary",
    "tenure_days",
    "mean_gap_days",
    "sessions_30d",
    "email_open_rate",
    "email_click_rate",
    "complaints",
    "web_share",
    "store_share",
)

REASONS = {
    "recency_days": "no purchase for {recency_days:.0f} days",
    "recency_over_gap": "{recency_over_gap:.1f}x their usual gap since the last purchase",
    "frequency": "{frequency:.0f} orders so far",
    "log_monetary": "average order value {monetary:.2f}",
    "tenure_days": "customer for {tenure_days:.0f} days",
    "mean_gap_days": "usually {mean_gap_days:.0f} days between purchases",
    "sessions_30d": "{sessions_30d:.0f} web sessions in the last 30 days",
    "email_open_rate": "opens {email_open_rate:.0%} of emails",
    "email_click_rate": "clicks {email_click_rate:.0%} of emails",
    "complaints": "{complaints:.0f} complaints",
    "web_share": "{web_share:.0%} of activity on the web",
    "store_share": "{store_share:.0%} of activity in stores",
}


def rfm(profile: Profile, now_ms: int) -> Rfm | None:
    return rfm_from_purchases(
        profile.purchase_times, profile.revenue_cents / 100, profile.orders, now_ms
    )


def mean_gap_days(purchase_times: list[int]) -> float | None:
    days = sorted({t // DAY_MS for t in purchase_times})
    if len(days) < 2:
        return None
    return (days[-1] - days[0]) / (len(days) - 1)


def features(profile: Profile, now_ms: int) -> dict[str, float]:
    last_buy = max(profile.purchase_times) if profile.purchase_times else profile.last_seen
    recency = max(0.0, (now_ms - (last_buy or now_ms)) / DAY_MS)
    tenure = max(0.0, (now_ms - (profile.first_seen or now_ms)) / DAY_MS)
    gap = mean_gap_days(profile.purchase_times) or max(tenure, 30.0)  # one-time buyer
    sent = sum(max(c.get("sent", 0), c.get("delivered", 0)) for c in profile.email.values())
    opened = sum(c.get("open", 0) for c in profile.email.values())
    clicked = sum(c.get("click", 0) for c in profile.email.values())
    events = max(profile.events, 1)
    web = sum(s.count for k, s in profile.channels.items() if k == "web")
    store = sum(s.count for k, s in profile.channels.items() if k == "pos")
    horizon = now_ms - 30 * DAY_MS
    monetary = profile.revenue_cents / 100 / profile.orders if profile.orders else 0.0
    return {
        "recency_days": recency,
        "recency_over_gap": recency / max(gap, 1.0),
        "frequency": float(profile.orders),
        "log_monetary": math.log1p(monetary),
        "tenure_days": tenure,
        "mean_gap_days": gap,
        "sessions_30d": float(sum(1 for s in profile.sessions if s.end >= horizon)),
        "email_open_rate": opened / sent if sent else 0.0,
        "email_click_rate": clicked / sent if sent else 0.0,
        "complaints": float(profile.support.get("complaint", 0)),
        "web_share": web / events,
        "store_share": store / events,
    }


def age(x: dict[str, float], days: float) -> dict[str, float]:
    """The same customer's features ``days`` later with nothing new happening."""
    if days <= 0:
        return x
    out = dict(x)
    out["recency_days"] = x["recency_days"] + days
    out["tenure_days"] = x["tenure_days"] + days
    out["recency_over_gap"] = out["recency_days"] / max(x["mean_gap_days"], 1.0)
    if days >= 30:
        out["sessions_30d"] = 0.0
    return out


def reason(name: str, x: dict[str, float]) -> str:
    values = {**x, "monetary": math.expm1(x.get("log_monetary", 0.0))}
    return REASONS[name].format(**values)
