"""The key layout keeps every script in one Redis Cluster slot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from pipeline.wire.keys import BUCKETS, RedisKeys, bucket

K = RedisKeys("crm:")


@given(st.text(min_size=1, max_size=40))
def test_a_customers_profile_segments_and_timers_share_a_slot(cid: str):
    b = bucket(cid)
    assert b in BUCKETS
    slot = key_slot(K.profile(cid).encode())
    assert key_slot(K.segments_due(b).encode()) == slot
    assert key_slot(K.segment_of("high-value", cid).encode()) == slot
    head, tail = K.profile_parts()
    assert K.profile(cid) == f"{head}{b}{tail}{cid}"


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_the_identity_graph_is_one_slot(cid: str, value: str):
    slots = {
        key_slot(k.encode())
        for k in (
            K.identifier("email", value),
            K.members(cid),
            K.merged_into(cid),
            K.erased(cid),
            K.event_markers(1_700_000_000, len(value)),
            K.event_merges(value),
        )
    }
    assert len(slots) == 1


def test_customer_ids_spread_over_all_buckets():
    from pipeline.transforms.identity import new_customer_id

    seen = {bucket(new_customer_id(("user_id", f"u{i}"))) for i in range(400)}
    assert seen == set(BUCKETS)
    # ... and the buckets over different slots, so a cluster spreads profiles
    assert len({key_slot(K.profile(f"c_{b}").encode()) for b in BUCKETS}) == 16
