"""Batch identity (components + rules) and the Beam pipeline agree with one sequential pass."""

from __future__ import annotations

import random

import apache_beam as beam
import msgspec
from apache_beam.testing.util import assert_that
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.backfill.run import build, pipeline_options
from pipeline.bench.workload import simulated_records
from pipeline.config import Settings
from pipeline.events import Event
from pipeline.rule_files import load_loyalty
from pipeline.transforms.fold import fold
from pipeline.transforms.identity import MemoryGraph, Rules
from pipeline.transforms.identity_batch import (
    UnionFind,
    arrival_order,
    dedupe,
    resolve_component,
)
from pipeline.transforms.profile import Profile
from pipeline.transforms.profile import decode as decode_profile

decoder = msgspec.json.Decoder(Event)
idents = st.tuples(
    st.sampled_from(["email", "user_id", "anonymous_id"]), st.text("abc", max_size=2)
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(idents, min_size=1, max_size=4), max_size=30), st.randoms())
def test_components_do_not_depend_on_order_or_split(groups, rnd):
    whole = UnionFind()
    for g in groups:
        whole.add_group(g)
    shuffled = list(groups)
    rnd.shuffle(shuffled)
    left, right = UnionFind(), UnionFind()
    for i, g in enumerate(shuffled):
        (left if i % 2 else right).add_group(g)
    left.merge(right)
    assert left.roots() == whole.roots()
    for g in groups:  # everything in one event is in one component
        assert len({whole.find(i) for i in g}) == 1


def events(n_customers: int = 40, touches: int = 400) -> list[Event]:
    s = Settings()
    out = [
        decoder.decode(r.value)
        for r in simulated_records(s, n_customers, touches, seed=5)
        if r.topic.endswith(".events")
    ]
    return out


LOYALTY = load_loyalty(Settings().loyalty_rules)  # the backfill accrues points by these


def sequential(evs: list[Event]) -> list[Profile]:
    """The reference: one graph over the whole history in arrival order, then fold."""
    graph = MemoryGraph(Rules())
    assigned = []
    for e in dedupe(evs):
        d = graph.resolve(e.identities)
        assigned.append((d.customer_id, e))
    out: dict[str, Profile] = {}
    for cid, e in assigned:
        s = graph.survivor(cid)
        out[s] = fold(out.get(s) or Profile(customer_id=s), e, LOYALTY.rules)
    return list(out.values())


def comparable(p: Profile) -> dict:
    doc = msgspec.to_builtins(msgspec.structs.replace(p, version=0, merges=[], seen={}))
    return doc


def test_resolving_components_separately_equals_one_pass():
    evs = events()
    evs += evs[:25]  # duplicates are dropped once
    random.Random(3).shuffle(evs)
    uf = UnionFind()
    rules = Rules()
    for e in evs:
        uf.add_group(rules.usable(e.identities))
    by_comp: dict = {}
    for e in evs:
        by_comp.setdefault(uf.find(rules.usable(e.identities)[0]), []).append(e)
    got: dict[str, Profile] = {}
    for comp in by_comp.values():
        for a in resolve_component(list(dedupe(comp)), rules).assigned:
            got[a.survivor] = fold(
                got.get(a.survivor) or Profile(customer_id=a.survivor), a.event, LOYALTY.rules
            )
    expected = {p.customer_id: p for p in sequential(evs)}
    assert set(got) == set(expected)
    for cid, p in expected.items():
        assert comparable(got[cid]) == comparable(p)


def test_arrival_order_is_receipt_then_id():
    evs = events(5, 30)
    ordered = sorted(evs, key=arrival_order)
    assert [e.received_at for e in ordered] == sorted(e.received_at for e in evs)


def test_beam_pipeline_profiles_equal_the_sequential_pass():
    evs = events()
    raws = [msgspec.json.encode(e) for e in evs]
    raws += raws[:30]  # duplicate deliveries
    expected = {p.customer_id: comparable(p) for p in sequential(evs)}

    def check(profiles: list[tuple[str, bytes]]) -> None:
        got = {cid: comparable(decode_profile(raw)) for cid, raw in profiles}
        assert got == expected
        assert sum(decode_profile(raw).events for _c, raw in profiles) == len(evs)

    with beam.Pipeline(options=pipeline_options("DirectRunner")) as p:
        out = build(p, p | beam.Create(raws), Settings(), targets=())
        assert_that(out["profiles"], check)
