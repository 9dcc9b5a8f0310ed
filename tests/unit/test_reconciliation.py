"""``crm reconcile``'s arithmetic: every acknowledged event lands in exactly one column."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.transforms.reconciliation import reconcile

ACKED = [("web", "e1"), ("web", "e2"), ("web", "e2"), ("pos", "p1"), ("pos", "p2"), ("pos", "p3")]


def test_each_acknowledged_event_is_stored_dead_lettered_or_missing() -> None:
    result = reconcile(ACKED, {"e1": 1, "e2": 3, "p1": 1, "x": 2}, {"p2"}, lag=0, profile_events=4)
    web, pos = (s for s in sorted(result.sources, key=lambda s: s.source, reverse=True))
    assert (web.acknowledged, web.stored, web.duplicated, web.lost) == (2, 2, 2, 0)
    assert (pos.acknowledged, pos.stored, pos.dead_lettered, pos.lost) == (3, 1, 1, 1)
    assert pos.lost_examples == ["p3"]
    assert result.unacknowledged_rows == 2 and result.stored_ids == 3
    assert result.profiles_off_by == 1 and not result.clean


def test_missing_events_are_in_flight_while_a_consumer_lags() -> None:
    result = reconcile(ACKED, {"e1": 1}, set(), lag=7)
    assert result.total.in_flight == 4 and result.total.lost == 0


def test_a_clean_run() -> None:
    stored = {"e1": 1, "e2": 1, "p1": 1, "p2": 1, "p3": 1}
    result = reconcile(ACKED, stored, set(), lag=0, profile_events=5)
    assert result.clean and result.total.acknowledged == 5 and result.profiles_off_by == 0


ids = st.sampled_from([f"e{i}" for i in range(12)])


@given(
    st.lists(st.tuples(st.sampled_from(["web", "pos", "email"]), ids)),
    st.dictionaries(ids, st.integers(1, 3)),
    st.sets(ids),
    st.integers(0, 2),
)
def test_columns_partition_the_acknowledged_events(
    acked: list[tuple[str, str]], stored: dict[str, int], failed: set[str], lag: int
) -> None:
    result = reconcile(acked, stored, failed, lag)
    for s in result.sources:
        assert s.stored + s.dead_lettered + s.in_flight + s.lost == s.acknowledged
    assert result.total.acknowledged == len({event_id for _s, event_id in acked})
    # the order events were acknowledged in changes nothing but which source a repeat counts for
    again = reconcile(list(reversed(acked)), stored, failed, lag).total
    assert (again.stored, again.duplicated, again.lost) == (
        result.total.stored,
        result.total.duplicated,
        result.total.lost,
    )
