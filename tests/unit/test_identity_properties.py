"""Property tests of identity merging over random event streams."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.transforms.identity import MemoryGraph, Rules
from tests.strategies import identity_sets

RULES = Rules()


@settings(max_examples=300, deadline=None)
@given(st.lists(identity_sets, max_size=40))
def test_graph_invariants_hold_after_any_event_sequence(stream):
    graph = MemoryGraph(RULES)
    for identities in stream:
        d = graph.resolve(identities)
        if d.customer_id is not None:
            # the event's customer is a live (not absorbed) customer
            assert d.customer_id not in graph.merged_into
    # every identifier has exactly one owner, and that owner lists it
    for (kind, value), owner in graph.owners.items():
        assert owner not in graph.merged_into
        assert value in graph.members[owner][kind]
    listed = [(k, v) for c in graph.members.values() for k, vs in c.items() for v in vs]
    assert len(listed) == len(set(listed)), "an identifier listed under two customers"
    for members in graph.members.values():
        for kind, values in members.items():
            assert len(values) <= RULES.limit(kind)
    # the blocked value never became an identifier
    assert ("anonymous_id", "null") not in graph.owners


@settings(max_examples=200, deadline=None)
@given(st.lists(identity_sets, max_size=30))
def test_every_usable_identifier_of_an_event_resolves_to_its_customer_or_was_dropped(stream):
    graph = MemoryGraph(RULES)
    for identities in stream:
        d = graph.resolve(identities)
        if d.customer_id is None:
            continue
        dropped = {i for i, _ in d.dropped}
        for ident in RULES.usable(identities):
            if ident not in dropped:
                assert graph.owners[ident] == d.customer_id


@settings(max_examples=200, deadline=None)
@given(st.lists(identity_sets, max_size=30))
def test_replaying_the_same_stream_is_idempotent(stream):
    graph = MemoryGraph(RULES)
    first = [graph.resolve(i).customer_id for i in stream]
    owners = dict(graph.owners)
    for identities in stream:
        d = graph.resolve(identities)
        assert not d.merges
    assert {k: graph.survivor(v) for k, v in owners.items()} == graph.owners
    assert all(c is None or graph.survivor(c) in graph.members for c in first)
