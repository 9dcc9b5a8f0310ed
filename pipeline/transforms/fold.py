"""``fold(profile, event)``: what one event contributes to a customer's profile.

Folding an event equals ``combine(profile, contribution(event))``, so folding and
merging cannot disagree: a profile is the combine of its events' contributions, in any
order, each event id once. One function (``_apply``) adds an event to a profile in place;
``contribution`` is that function applied to an empty profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.events import (
    CHANNEL_BY_TYPE,
    Consent,
    Email,
    Event,
    Group,
    Identify,
    Page,
    PosTransaction,
    Screen,
    Support,
    Track,
    event_type,
)
from pipeline.transforms.attribution import touch_of
from pipeline.transforms.profile import (
    MAX_PURCHASE_TIMES,
    MAX_SEEN,
    Lww,
    Profile,
    Session,
    Span,
    Spend,
    Touch,
    add_session,
    combine,
    lww_into,
    prune_seen,
    spend_into,
    touch_into,
    union_into,
)

WEB_TYPES = (Page, Screen, Track)
PREFERENCES_EVENT = "Preferences Updated"  # what the preference centre emits
PREFERENCE_KEYS = frozenset({"categories", "excluded_categories", "channels", "language"})


@dataclass(frozen=True)
class FoldRules:
    """Business rules the fold needs; loyalty accrual is configurable per deployment."""

    points_per_currency_unit: float = 1.0
    channel_multipliers: tuple[tuple[str, float], ...] = ()  # ("store", 1.5), ("web", 1.0)
    category_multipliers: tuple[tuple[str, float], ...] = ()  # ("beauty", 2.0)

    def points(self, channel: str, total_cents: int, lines: list[tuple[str | None, int]]) -> int:
        """Points for one purchase: the total at the base rate, plus category bonuses."""
        rate = self.points_per_currency_unit * dict(self.channel_multipliers).get(channel, 1.0)
        bonus = dict(self.category_multipliers)
        extra = sum(c * (bonus[cat] - 1.0) for cat, c in lines if cat in bonus)
        return max(0, int((total_cents + extra) * rate) // 100)


DEFAULT_RULES = FoldRules()


def cents(value: object) -> int:
    try:
        return round(float(value) * 100)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def event_time_ms(event: Event) -> int:
    ts = event.timestamp or event.received_at
    return int(ts.timestamp() * 1000) if ts else 0


@dataclass(frozen=True)
class _Line:
    sku: str
    category: str | None
    brand: str | None
    quantity: int
    cents: int


def _spend(keys: list[tuple[str | None, int]]) -> dict[str, Spend]:
    out: dict[str, Spend] = {}
    for key, amount in keys:
        if key:
            cur = out.get(key, Spend(0, 0))
            out[key] = Spend(cur.count + 1, cur.cents + amount)
    return out


def _purchase(
    p: Profile, t: int, total_cents: int, lines: list[_Line], rules: FoldRules, channel: str
) -> None:
    p.orders += 1
    p.revenue_cents += total_cents
    p.purchase_times = union_into(p.purchase_times, [t], MAX_PURCHASE_TIMES)
    spend_into(p.categories, _spend([(li.category, li.cents) for li in lines]))
    spend_into(p.brands, _spend([(li.brand, li.cents) for li in lines]))
    for li in lines:
        if li.sku:
            p.skus_bought[li.sku] = p.skus_bought.get(li.sku, 0) + li.quantity
    touch_into(p.affinity, _affinity(t, [(li.category, li.brand, PURCHASE_WEIGHT) for li in lines]))
    p.points_earned += rules.points(channel, total_cents, [(li.category, li.cents) for li in lines])


# How much one touch says about a preference: a view, a cart add, a purchased line.
VIEW_WEIGHT, CART_WEIGHT, PURCHASE_WEIGHT = 1, 3, 5


def _affinity(t_ms: int, touches: list[tuple[str | None, str | None, int]]) -> dict[str, Touch]:
    out: dict[str, Touch] = {}
    t_s = t_ms // 1000
    for category, brand, weight in touches:
        for key in (
            f"category:{category}" if category else None,
            f"brand:{brand}" if brand else None,
        ):
            if key:
                cur = out.get(key, Touch(0, 0))
                out[key] = Touch(cur.weight + weight, cur.weighted_s + weight * t_s)
    return out


def _web_line(prod: dict[str, object]) -> _Line:
    qty = prod.get("quantity")
    quantity = qty if isinstance(qty, int) and qty > 0 else 1
    return _Line(
        sku=str(prod.get("sku") or prod.get("product_id") or ""),
        category=str(prod["category"]) if prod.get("category") else None,
        brand=str(prod["brand"]) if prod.get("brand") else None,
        quantity=quantity,
        cents=cents(prod.get("price")) * quantity,
    )


def contribution(event: Event, customer_id: str, rules: FoldRules = DEFAULT_RULES) -> Profile:
    """The profile of a customer who did exactly this one event."""
    p = Profile(customer_id=customer_id)
    _apply(p, event, rules)
    return p


def _apply(p: Profile, event: Event, rules: FoldRules) -> None:
    """Add one event to ``p`` in place: ``merge_into(p, <that event's one-event profile>)``.

    Written field by field rather than as that merge, which would build a forty-field
    profile per event only to add it; ``tests/unit/test_profile_algebra.py`` checks the two
    agree for every kind of event.
    """
    t = event_time_ms(event)
    eid = event.message_id or ""
    kind = event_type(event)
    channel = CHANNEL_BY_TYPE.get(kind, kind)
    p.version += 1
    p.events += 1
    p.seen[eid] = t
    if len(p.seen) > MAX_SEEN:
        p.seen = prune_seen(p.seen)
    p.first_seen = t if p.first_seen is None else min(p.first_seen, t)
    p.last_seen = t if p.last_seen is None else max(p.last_seen, t)
    for k, v in sorted(event.identities.items()):
        p.identifiers[k] = union_into(p.identifiers.get(k, []), [v])
    span = p.channels.get(channel)
    p.channels[channel] = (
        Span(t, t, 1)
        if span is None
        else Span(min(span.first, t), max(span.last, t), span.count + 1)
    )
    label = f"{kind}:{event.event}" if isinstance(event, Track) else kind
    p.counts[label] = p.counts.get(label, 0) + 1
    traits: dict[str, Lww] = {}
    context = event.context
    if context:
        # Segment's context.traits carry identify traits on any call (RudderStack's JS SDK
        # sends them only there); the call's own traits win on a conflict.
        ctx_traits = context.get("traits")
        if isinstance(ctx_traits, dict) and ctx_traits:
            traits = {str(k): Lww(v, t, eid) for k, v in ctx_traits.items()}
        touch = touch_of(context)
        if touch is not None and (
            p.first_touch is None or (t, eid) < (p.first_touch.ts, p.first_touch.eid)
        ):
            p.first_touch = Lww(touch, t, eid)

    stated = isinstance(event, Track) and event.event == PREFERENCES_EVENT
    if isinstance(event, WEB_TYPES) and not stated:
        is_page = isinstance(event, Page | Screen)
        product = isinstance(event, Track) and event.event == "Product Viewed"
        p.sessions = add_session(p.sessions, Session(t, t, 1, int(is_page), int(product)))
        p.page_views += int(is_page)
    if isinstance(event, Track):
        props = event.properties
        sku = str(props.get("sku") or props.get("product_id") or "")
        if event.event == "Product Viewed" and sku:
            p.product_views[sku] = p.product_views.get(sku, 0) + 1
            line = _web_line(props)
            touch_into(p.affinity, _affinity(t, [(line.category, line.brand, VIEW_WEIGHT)]))
        elif event.event == "Product Added":
            p.cart_adds += 1
            line = _web_line(props)
            p.cart_cents += line.cents
            touch_into(p.affinity, _affinity(t, [(line.category, line.brand, CART_WEIGHT)]))
        elif event.event == PREFERENCES_EVENT:
            lww_into(
                p.preferences,
                {k: Lww(v, t, eid) for k, v in sorted(props.items()) if k in PREFERENCE_KEYS},
            )
        elif event.event == "Order Completed":
            products = props.get("products") or []
            lines = [_web_line(prod) for prod in products if isinstance(prod, dict)]
            total = cents(
                props.get("revenue") if props.get("revenue") is not None else props.get("total")
            )
            _purchase(p, t, total, lines, rules, "web")
    elif isinstance(event, Identify):
        traits.update({k: Lww(v, t, eid) for k, v in event.traits.items()})
    elif isinstance(event, Group):
        lww_into(
            p.groups.setdefault(event.group_id, {}),
            {k: Lww(v, t, eid) for k, v in event.traits.items()},
        )
    elif isinstance(event, PosTransaction):
        pos_lines = [
            _Line(li.sku, li.category, li.brand, li.quantity, cents(li.price) * li.quantity)
            for li in event.items
        ]
        _purchase(p, t, cents(event.total), pos_lines, rules, "store")
        p.stores[event.store_id] = p.stores.get(event.store_id, 0) + 1
        p.points_redeemed += event.points_redeemed
    elif isinstance(event, Email):
        actions = p.email.setdefault(event.campaign_id or "(none)", {})
        actions[event.action] = actions.get(event.action, 0) + 1
    elif isinstance(event, Consent):
        lww_into(p.consent, {event.purpose: Lww(event.status, t, eid)})
    elif isinstance(event, Support):
        p.support[event.kind] = p.support.get(event.kind, 0) + 1
        if event.kind == "complaint":
            p.complaint_topics[event.topic] = p.complaint_topics.get(event.topic, 0) + 1
        lww_into(p.cases, {event.case_id or eid: Lww(f"{event.kind}:{event.status}", t, eid)})
    if traits:
        lww_into(p.traits, traits)


def is_duplicate(profile: Profile, event: Event) -> bool:
    return bool(event.message_id) and event.message_id in profile.seen


def fold(profile: Profile, event: Event, rules: FoldRules = DEFAULT_RULES) -> Profile:
    """Apply one event; a duplicate (same event id within the dedupe window) changes nothing."""
    if is_duplicate(profile, event):
        return profile
    return combine(profile, contribution(event, profile.customer_id, rules))


def fold_into(profile: Profile, event: Event, rules: FoldRules = DEFAULT_RULES) -> bool:
    """``fold`` in place, for the owner of ``profile``; returns whether anything changed."""
    if is_duplicate(profile, event):
        return False
    _apply(profile, event, rules)
    return True
