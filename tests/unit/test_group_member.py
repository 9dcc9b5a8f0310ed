"""GroupMember: a consumer that stays out of its group while the broker answers is replaced."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import KafkaException

from pipeline.kafka.group_member import GroupMember, SteadinessClock, group_steady


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats(state: str, join_state: str) -> dict[str, Any]:
    return {"type": "consumer", "cgrp": {"state": state, "join_state": join_state}}


def test_group_steady_reads_librdkafka_statistics() -> None:
    assert group_steady(stats("up", "steady")) is True
    assert group_steady(stats("up", "wait-join")) is False
    assert group_steady(stats("wait-coord", "init")) is False
    assert group_steady({"type": "consumer"}) is None  # no group: nothing to say


def test_steadiness_clock_counts_from_the_first_unsteady_report() -> None:
    clock = Clock()
    sc = SteadinessClock(clock)
    clock.now += 5
    assert sc.unsteady_for() == 5  # a new member is unsteady until it joined
    sc.observe(stats("up", "steady"))
    clock.now += 100
    assert sc.unsteady_for() == 0
    sc.observe(stats("up", "wait-join"))
    clock.now += 30
    sc.observe(stats("query-coord", "init"))  # still the same unsteady spell
    clock.now += 10
    assert sc.unsteady_for() == 40
    sc.observe({"type": "consumer"})  # a report without a group changes nothing
    assert sc.unsteady_for() == 40
    sc.observe(stats("up", "steady"))
    assert sc.unsteady_for() == 0


class FakeConsumer:
    made: list[FakeConsumer] = []
    reachable = True

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.subscribed: list[str] = []
        self.closed = False
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str]) -> None:
        self.subscribed = topics

    def report(self, state: str, join_state: str) -> None:
        self.config["stats_cb"](json.dumps(stats(state, join_state)))

    def list_topics(self, timeout: float) -> object:
        if not FakeConsumer.reachable:
            raise KafkaException("all brokers down")
        return object()

    def close(self) -> None:
        self.closed = True


def member(clock: Clock) -> GroupMember:
    FakeConsumer.made = []
    m = GroupMember(
        {"group.id": "g"},
        ["t"],
        "test",
        rejoin_timeout_s=60,
        make=FakeConsumer,  # type: ignore[arg-type]
    )
    m.steadiness = SteadinessClock(clock)
    return m


def test_a_steady_member_is_kept() -> None:
    clock = Clock()
    m = member(clock)
    first: FakeConsumer = m.consumer  # type: ignore[assignment]
    assert first.subscribed == ["t"] and first.config["statistics.interval.ms"] > 0
    first.report("up", "steady")
    clock.now += 600
    assert not m.heal() and m.consumer is first


def test_a_member_stuck_while_the_broker_answers_is_replaced_and_closed() -> None:
    clock = Clock()
    m = member(clock)
    first: FakeConsumer = m.consumer  # type: ignore[assignment]
    first.report("up", "steady")
    first.report("up", "wait-join")  # session timed out: rejoining
    clock.now += 59
    assert not m.heal()  # a rejoin may take a while
    clock.now += 2
    assert m.heal()
    second: FakeConsumer = m.consumer  # type: ignore[assignment]
    assert second is not first and second.subscribed == ["t"] and m.replaced == 1
    for _ in range(100):  # closed on a thread of its own
        if first.closed:
            break
        import time

        time.sleep(0.01)
    assert first.closed
    assert not m.heal()  # the new member gets its own full timeout
    second.report("up", "steady")
    clock.now += 120
    assert not m.heal()


def test_a_broker_outage_is_waited_out_not_answered_with_new_consumers() -> None:
    clock = Clock()
    m = member(clock)
    first: FakeConsumer = m.consumer  # type: ignore[assignment]
    first.report("wait-coord", "init")
    clock.now += 300
    FakeConsumer.reachable = False
    try:
        assert not m.heal() and m.consumer is first
    finally:
        FakeConsumer.reachable = True
    assert m.heal()  # the broker is back and the member still is not in its group
