"""Reading topics by offset range: for summaries, reports and tests.

Uses manual partition assignment (no consumer group) so inspecting a topic never
disturbs the offsets of the workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.config import Settings

T = TypeVar("T")


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"crm-inspect-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )


def end_offsets(settings: Settings, topic: str, wait_s: float = 60.0) -> dict[int, int]:
    """High watermark per partition (the offset the next record will get).

    A broker that just restarted answers before it has elected a leader for every
    partition of an existing topic ("not leader for partition"): that is waited out
    for up to ``wait_s`` seconds rather than reported as a failure.
    """
    consumer = _consumer(settings)

    def read() -> dict[int, int]:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }

    try:
        return _waiting_out(read, _LEADERLESS, wait_s)
    finally:
        consumer.close()


def _waiting_out(call: Callable[[], T], codes: set[int], wait_s: float) -> T:
    """``call()``, again every half second while it fails with one of ``codes``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and error.code() in codes
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


_LEADERLESS = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
    KafkaError._UNKNOWN_PARTITION,  # metadata not loaded yet after a restart
}
# A group's coordinator is away or still loading its offsets (a broker restart).
_COORDINATORLESS = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._WAIT_COORD,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def read_range(
    settings: Settings,
    topic: str,
    start: dict[int, int] | None = None,
    end: dict[int, int] | None = None,
    timeout: float = 30.0,
) -> Iterator[Message]:
    """Every record from ``start`` (default: beginning) up to ``end`` (default: now)."""
    end = end if end is not None else end_offsets(settings, topic)
    start = start or {}
    todo = {p: off for p, off in end.items() if off > start.get(p, 0)}
    if not todo:
        return
    consumer = _consumer(settings)
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                p, offset = msg.partition(), msg.offset() or 0
                if p is not None and p in todo and offset < todo[p]:
                    yield msg
                    if offset + 1 >= todo[p]:
                        del todo[p]
        if todo:
            raise TimeoutError(f"{topic}: did not reach end offsets {todo} within {timeout}s")
    finally:
        consumer.close()


def group_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Records not yet committed by a consumer group, summed over the given topics."""
    return sum(group_lag_by_partition(settings, group, topics).values())


def group_lag_by_partition(
    settings: Settings, group: str, topics: list[str]
) -> dict[tuple[str, int], int]:
    """Uncommitted records per (topic, partition) for a consumer group."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        lag: dict[tuple[str, int], int] = {}
        for topic in topics:
            ends = end_offsets(settings, topic)
            committed = _committed(consumer, [TopicPartition(topic, p) for p in ends])
            for tp in committed:
                lag[(topic, tp.partition)] = ends[tp.partition] - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def _committed(
    consumer: Consumer, partitions: list[TopicPartition], wait_s: float = 60.0
) -> list[TopicPartition]:
    """A group's committed offsets, waiting out a coordinator that is moving or loading."""
    return _waiting_out(
        lambda: list(consumer.committed(partitions, timeout=10)), _COORDINATORLESS, wait_s
    )
