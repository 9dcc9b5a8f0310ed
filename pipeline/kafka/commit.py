"""Committing offsets synchronously while the group coordinator may be away.

A broker restart makes commits fail for a while (``_WAIT_COORD``, ``NOT_COORDINATOR``,
transport errors); a sink that let that exception escape exited with its work done but
uncommitted. Here such a commit is retried with backoff until it succeeds, the process is
told to stop, or the group took the partitions away (a rebalance: the new owner reads
from the last committed offset, which sinks handle with their own idempotence).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.logs import get_logger
from pipeline.metrics import DEPENDENCY_UP, RETRIES

log = get_logger("kafka")
LOST_ASSIGNMENT = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._ASSIGNMENT_LOST,
    }
)
MAX_DELAY_S = 5.0


def commit_until_done(
    consumer: Consumer,
    offsets: list[TopicPartition],
    stop: threading.Event,
    process: str,
    give_up: Callable[[], bool] | None = None,
) -> bool:
    """True once committed; False when the assignment was lost, ``stop`` was set, or
    ``give_up()`` says retrying is pointless (a consumer stuck out of its group, which the
    caller replaces: the new one reads from the last committed offsets)."""
    delay = 0.2
    while True:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() in LOST_ASSIGNMENT:
                log.warning("offsets not committed: partitions reassigned", error=str(error))
                return False
            RETRIES.labels(f"{process}-commit").inc()
            DEPENDENCY_UP.labels(process, "kafka").set(0)
            log.warning("offset commit failed, retrying", error=str(exc)[:300], retry_in=delay)
            if stop.wait(delay) or (give_up is not None and give_up()):
                return False
            delay = min(delay * 2, MAX_DELAY_S)
            continue
        DEPENDENCY_UP.labels(process, "kafka").set(1)
        return True
