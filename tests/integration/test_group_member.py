"""GroupMember against the real broker: librdkafka's statistics report a joined consumer
as steady (the field names the watchdog reads are the ones librdkafka emits), so a
healthy consumer is never replaced."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from pipeline.config import Settings
from pipeline.kafka.group_member import GroupMember
from pipeline.kafka.topics import ensure_topics


def test_a_joined_consumer_reports_itself_steady(settings: Settings) -> None:
    ensure_topics(settings)
    m = GroupMember(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"it-steady-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        },
        [settings.topic("events")],
        "it",
        rejoin_timeout_s=0.5,
    )
    try:
        deadline = time.monotonic() + 60
        while m.steadiness.unsteady_since is not None and time.monotonic() < deadline:
            m.consumer.consume(100, 0.5)
        assert m.steadiness.unsteady_since is None, "librdkafka never reported the group steady"
        assert m.consumer.assignment(), "steady but without partitions"
        for _ in range(14):  # past several statistics intervals and the 0.5 s timeout
            m.consumer.consume(100, 0.5)
            assert not m.heal()
        assert m.replaced == 0
    finally:
        m.consumer.close()


def test_a_member_kept_out_of_its_group_is_replaced_and_joins_when_it_can(
    settings: Settings,
) -> None:
    """A member whose JoinGroup the coordinator refuses (another member holds the group with
    an incompatible assignment protocol: INCONSISTENT_GROUP_PROTOCOL) stays unsteady while
    the broker answers: it is replaced, and the replacement joins once the group lets it."""
    ensure_topics(settings)
    group = f"it-stuck-{uuid.uuid4().hex[:8]}"
    base = {"bootstrap.servers": settings.kafka_bootstrap, "group.id": group}
    topics = [settings.topic("events")]
    holder = Consumer({**base, "partition.assignment.strategy": "roundrobin"})
    holder.subscribe(topics)
    deadline = time.monotonic() + 60
    while not holder.assignment() and time.monotonic() < deadline:
        holder.consume(10, 0.5)
    assert holder.assignment(), "the holding member never joined"
    m = GroupMember(
        {**base, "partition.assignment.strategy": "cooperative-sticky"},
        topics,
        "it",
        rejoin_timeout_s=3,
    )
    try:
        deadline = time.monotonic() + 60
        while m.replaced == 0 and time.monotonic() < deadline:
            m.consumer.consume(10, 0.5)
            holder.consume(10, 0.1)
            m.heal()
        assert m.replaced >= 1, "a member kept out of its group was never replaced"
        holder.close()  # the group is free: the (replaced) member joins it
        deadline = time.monotonic() + 90
        while not m.consumer.assignment() and time.monotonic() < deadline:
            m.consumer.consume(10, 0.5)
            m.heal()
        assert m.consumer.assignment(), "the replacement never joined the free group"
    finally:
        m.consumer.close()
