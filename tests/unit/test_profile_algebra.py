"""Property tests: the profile is a fold of events that does not care about order or duplicates."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import (
    Consent,
    Email,
    Group,
    Identify,
    LineItem,
    Page,
    PosTransaction,
    Support,
    Track,
)
from pipeline.transforms.conditions import MISSING, as_ms, walk
from pipeline.transforms.fold import contribution, fold, fold_into, is_duplicate
from pipeline.transforms.profile import Lww, Profile, clone, combine, merge_into
from pipeline.transforms.profile_view import FIELDS, KEYED, TOP_FIELDS, LazyView, render

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def canon(p: Profile) -> bytes:
    return msgspec.json.encode(p, order="sorted")


times = st.integers(min_value=0, max_value=5 * 24 * 3600).map(lambda s: BASE + timedelta(seconds=s))
cats = st.sampled_from(["shoes", "books", "home"])
ids = st.fixed_dictionaries(
    {},
    optional={
        "anonymous_id": st.sampled_from(["ck1", "ck2"]),
        "user_id": st.just("u1"),
        "email": st.just("e" * 64),
    },
)


PAGE_CONTEXT = {"page": {"url": "https://shop.example/", "referrer": "https://www.google.com/"}}
CAMPAIGN_CONTEXT = {
    "page": {"url": "https://shop.example/?utm_source=news"},
    "campaign": {"source": "news", "medium": "email", "name": "spring"},
}
TRAITS_CONTEXT = {"traits": {"city": "Kaunas", "plan": "silver"}}


@st.composite
def events(draw: st.DrawFn, n: int = 0):
    kind = draw(
        st.sampled_from(
            [
                "page",
                "view",
                "add",
                "order",
                "identify",
                "group",
                "pos",
                "email",
                "consent",
                "support",
            ]
        )
    )
    common = {
        "message_id": f"m{n}",
        "timestamp": draw(times),
        "identities": draw(ids),
        "anonymous_id": "ck1",
    }
    price = draw(st.floats(min_value=0, max_value=500, allow_nan=False).map(lambda x: round(x, 2)))
    if kind == "page":
        # page context makes the event a touch: first_touch is first-writer-wins
        context = draw(st.sampled_from([{}, PAGE_CONTEXT, CAMPAIGN_CONTEXT, TRAITS_CONTEXT]))
        return Page(name="home", context=context, **common)
    if kind == "group":
        return Group(
            group_id=draw(st.sampled_from(["acme", "initech"])),
            traits={
                "plan": draw(st.sampled_from(["free", "pro"])),
                "seats": draw(st.integers(1, 9)),
            },
            **common,
        )
    if kind == "view":
        return Track(
            event="Product Viewed", properties={"sku": draw(st.sampled_from(["A", "B"]))}, **common
        )
    if kind == "add":
        return Track(
            event="Product Added", properties={"sku": "A", "price": price, "quantity": 2}, **common
        )
    if kind == "order":
        return Track(
            event="Order Completed",
            properties={
                "order_id": f"o{n}",
                "revenue": price,
                "products": [{"sku": "A", "price": price, "category": draw(cats), "brand": "Nike"}],
            },
            **common,
        )
    if kind == "identify":
        return Identify(
            traits={"city": draw(st.sampled_from(["Vilnius", "Riga"])), "plan": "gold"}, **common
        )
    if kind == "pos":
        return PosTransaction(
            transaction_id=f"t{n}",
            store_id=draw(st.sampled_from(["s1", "s2"])),
            items=[LineItem(sku="B", category=draw(cats), price=price, quantity=1)],
            total=price,
            points_redeemed=draw(st.integers(0, 50)),
            loyalty_id="L1",
            **common,
        )
    if kind == "email":
        return Email(
            action=draw(st.sampled_from(["sent", "open", "click"])),
            campaign_id="c1",
            email="x@y.z",
            **common,
        )
    if kind == "consent":
        return Consent(
            purpose="email_marketing",
            status=draw(st.sampled_from(["granted", "revoked"])),
            user_id="u1",
            **common,
        )
    return Support(
        kind="complaint", topic=draw(st.sampled_from(["refund", "late"])), user_id="u1", **common
    )


@st.composite
def event_sets(draw: st.DrawFn, max_size: int = 25):
    size = draw(st.integers(min_value=0, max_value=max_size))
    return [draw(events(n)) for n in range(size)]


def fold_all(evs, cid="c1") -> Profile:
    p = Profile(customer_id=cid)
    for e in evs:
        p = fold(p, e)
    return p


@settings(max_examples=150, deadline=None)
@given(event_sets(), st.randoms(use_true_random=False), st.lists(st.integers(0, 24), max_size=10))
def test_any_order_with_duplicates_gives_the_same_profile(evs, rnd, dup_idx):
    expected = fold_all(evs)
    shuffled = list(evs) + [evs[i] for i in dup_idx if i < len(evs)]
    rnd.shuffle(shuffled)
    got = fold_all(shuffled)
    assert canon(got) == canon(expected)
    assert got.version == len(evs) and got.events == len(evs)


@settings(max_examples=100, deadline=None)
@given(event_sets(12), event_sets(12), event_sets(12))
def test_combine_is_associative(a_evs, b_evs, c_evs):
    b_evs = [msgspec.structs.replace(e, message_id=f"b{e.message_id}") for e in b_evs]
    c_evs = [msgspec.structs.replace(e, message_id=f"c{e.message_id}") for e in c_evs]
    a, b, c = fold_all(a_evs), fold_all(b_evs), fold_all(c_evs)
    assert canon(combine(combine(a, b), c)) == canon(combine(a, combine(b, c)))


@settings(max_examples=100, deadline=None)
@given(event_sets(15), event_sets(15))
def test_combine_is_commutative_up_to_the_survivor_id(a_evs, b_evs):
    b_evs = [msgspec.structs.replace(e, message_id=f"b{e.message_id}") for e in b_evs]
    a, b = fold_all(a_evs), fold_all(b_evs)
    ab, ba = combine(a, b), combine(b, a)
    assert canon(msgspec.structs.replace(ba, customer_id=ab.customer_id)) == canon(ab)


@settings(max_examples=100, deadline=None)
@given(event_sets(15), event_sets(15), event_sets(5))
def test_merging_then_folding_equals_folding_then_merging(a_evs, b_evs, later):
    b_evs = [msgspec.structs.replace(e, message_id=f"b{e.message_id}") for e in b_evs]
    later = [msgspec.structs.replace(e, message_id=f"z{e.message_id}") for e in later]
    a, b = fold_all(a_evs), fold_all(b_evs, "c2")
    merged_first = combine(a, b)
    for e in later:
        merged_first = fold(merged_first, e)
    folded_first = a
    for e in later:
        folded_first = fold(folded_first, e)
    assert canon(combine(folded_first, b)) == canon(merged_first)


@settings(max_examples=60, deadline=None)
@given(event_sets(30))
def test_folding_equals_combining_split_halves(evs):
    """What Beam's CombinePerKey does: fold parts anywhere, combine the accumulators."""
    cut = random.Random(len(evs)).randint(0, len(evs))
    assert canon(combine(fold_all(evs[:cut]), fold_all(evs[cut:]))) == canon(fold_all(evs))


@settings(max_examples=150, deadline=None)
@given(event_sets(20), st.data())
def test_folding_in_place_equals_merging_the_contribution(evs, data):
    """The stream worker's fold (field by field, in place) is the algebra's combine."""
    in_place = Profile(customer_id="c1")
    for e in evs:
        before = clone(in_place)
        dup = is_duplicate(before, e)
        expected = before if dup else merge_into(before, contribution(e, "c1"))
        assert fold_into(in_place, e) is not dup
        assert canon(in_place) == canon(expected)
    if evs:  # a copy of an event already folded (same event id) changes nothing
        again = data.draw(st.sampled_from(evs))
        before_copy = canon(in_place)
        assert fold_into(in_place, again) is False
        assert canon(in_place) == before_copy


@settings(max_examples=100, deadline=None)
@given(event_sets())
def test_field_shortcuts_of_the_view_equal_its_sections(evs):
    """Segment conditions read single fields without building sections: same values."""
    p = fold_all(evs)
    p.scores = {"churn_risk": Lww(0.5, 1, "s"), "nested": Lww({"a": 1}, 1, "s")}
    now = (p.last_seen or 0) + 1000
    full = render(p, now)
    view = LazyView(p, now)
    paths = [*FIELDS, *((k,) for k in TOP_FIELDS)]
    paths += [(k, name) for k in KEYED for name in (*full[k], "absent")]
    paths += [("scores", "nested", "a"), ("scores", "nested", "b"), ("traits", "city", "x")]
    for path in paths:
        assert view.resolve(path, MISSING) == walk(full, path), path
        assert as_ms(view.resolve(path, MISSING)) == as_ms(walk(full, path)), path
    assert not dict.__len__(view)  # answered without building a section
