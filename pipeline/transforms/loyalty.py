"""The loyalty ladder and tiers: where a customer stands, derived from the profile.

Ladder stages (Christopher, Payne & Ballantyne's relationship ladder), highest
that applies wins:

* ``partner``   - flagged as a business partner (trait ``partner: true``);
* ``advocate``  - has bought and recommended us (a review or referral event);
* ``supporter`` - repeat buyer who engages (email opens/clicks plus web sessions at
  least ``supporter_min_engagement``) and has no open complaint;
* ``client``    - repeat buyer (two or more orders);
* ``customer``  - exactly one order;
* ``prospect``  - known to us, never bought.

Tiers follow lifetime points earned (points accrue in the fold, by the rules in
the same file, so the Beam backfill computes the same balance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.transforms.conditions import LineDict, fail, load_yaml
from pipeline.transforms.fold import FoldRules
from pipeline.transforms.profile import Profile

STAGES = ("prospect", "customer", "client", "supporter", "advocate", "partner")


@dataclass(frozen=True)
class LoyaltyConfig:
    rules: FoldRules = field(default_factory=FoldRules)
    tiers: tuple[tuple[str, int], ...] = (
        ("member", 0),
        ("silver", 500),
        ("gold", 2000),
        ("platinum", 5000),
    )
    advocate_events: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {"Review Submitted", "Product Reviewed", "Referral Sent", "Referral Completed"}
        )
    )
    supporter_min_engagement: int = 3
    partner_trait: str = "partner"


def _multipliers(node: Any, key: str, source: str) -> tuple[tuple[str, float], ...]:
    value = node.get(key, {}) if isinstance(node, dict) else {}
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and v >= 0 for v in value.values()
    ):
        raise fail(source, node, f"'{key}' must map names to non-negative numbers", key)
    return tuple(sorted((str(k), float(v)) for k, v in value.items()))


def parse_loyalty(text: str, src: str = "<loyalty>") -> LoyaltyConfig:
    """Parse ``config/loyalty.yaml``'s text; missing sections keep the defaults."""
    doc = load_yaml(text, src)
    unknown = set(doc) - {"points", "tiers", "ladder"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(src, doc, f"unknown section {key!r}; expected points, tiers, ladder", key)
    base = LoyaltyConfig()
    points = doc.get("points", LineDict())
    if not isinstance(points, dict):
        raise fail(src, doc, "'points' must be a mapping", "points")
    rate = points.get("per_currency_unit", base.rules.points_per_currency_unit)
    if not isinstance(rate, int | float) or rate < 0:
        raise fail(
            src, points, "'per_currency_unit' must be a non-negative number", "per_currency_unit"
        )
    rules = FoldRules(
        points_per_currency_unit=float(rate),
        channel_multipliers=_multipliers(points, "channels", src),
        category_multipliers=_multipliers(points, "categories", src),
    )
    tiers = base.tiers
    if "tiers" in doc:
        raw = doc["tiers"]
        if not isinstance(raw, list) or not raw:
            raise fail(src, doc, "'tiers' must be a non-empty list", "tiers")
        parsed = []
        for item in raw:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not isinstance(item.get("min_points"), int)
            ):
                raise fail(
                    src,
                    item,
                    "each tier needs 'name' (text) and 'min_points' (integer)",
                    line=doc.lines.get("tiers", 0),
                )
            parsed.append((item["name"], item["min_points"]))
        parsed.sort(key=lambda t: t[1])
        if parsed[0][1] != 0:
            raise fail(src, doc, "the lowest tier must start at min_points: 0", "tiers")
        tiers = tuple(parsed)
    ladder = doc.get("ladder", LineDict())
    if not isinstance(ladder, dict):
        raise fail(src, doc, "'ladder' must be a mapping", "ladder")
    advocate = ladder.get("advocate_events", sorted(base.advocate_events))
    engagement = ladder.get("supporter_min_engagement", base.supporter_min_engagement)
    if not isinstance(advocate, list) or not isinstance(engagement, int):
        raise fail(src, ladder, "advocate_events is a list, supporter_min_engagement an integer")
    return LoyaltyConfig(
        rules=rules,
        tiers=tiers,
        advocate_events=frozenset(str(e) for e in advocate),
        supporter_min_engagement=engagement,
        partner_trait=str(ladder.get("partner_trait", base.partner_trait)),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "partner")
    return bool(value)


def open_complaints(p: Profile) -> int:
    return sum(1 for v in p.cases.values() if str(v.value) == "complaint:open")


def engagement(p: Profile) -> int:
    email = sum(
        n for actions in p.email.values() for a, n in actions.items() if a in ("open", "click")
    )
    return email + len(p.sessions)


def stage(p: Profile, config: LoyaltyConfig) -> tuple[str, str]:
    """The ladder stage and the criterion that put the customer there."""
    flag = p.traits.get(config.partner_trait)
    if flag is not None and _truthy(flag.value):
        return "partner", f"trait {config.partner_trait} is set"
    advocacy = sum(
        n for label, n in p.counts.items() if label.partition(":")[2] in config.advocate_events
    )
    if p.orders >= 1 and advocacy:
        return "advocate", f"{advocacy} review/referral event(s) after buying"
    if p.orders >= 2:
        engaged = engagement(p)
        if engaged >= config.supporter_min_engagement and not open_complaints(p):
            return "supporter", f"{p.orders} orders, engagement {engaged}, no open complaint"
        return "client", f"{p.orders} orders"
    if p.orders == 1:
        return "customer", "one order"
    return "prospect", "no order yet"


def tier(p: Profile, config: LoyaltyConfig) -> str:
    current = config.tiers[0][0]
    for name, minimum in config.tiers:
        if p.points_earned >= minimum:
            current = name
    return current
