"""Consumer lag of a consumer group, exported as ``crm_consumer_lag``.

Every process that consumes (workers, the ClickHouse and archive sinks) runs one
:class:`LagReporter` for its own group: a daemon thread that reads the group's
committed offsets and each partition's high watermark every few seconds. It never
joins the group (no subscribe), so it cannot trigger a rebalance. Every member of a
group reports the whole group's lag: aggregate with ``max by (group, topic, partition)``.
"""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pipeline.logs import get_logger
from pipeline.metrics import CONSUMER_LAG

log = get_logger("lag")


def group_lag(
    consumer: Consumer, topics: list[str], timeout: float = 5.0
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> records between the group's committed offset and the end."""
    meta = consumer.list_topics(timeout=timeout)
    tps = [
        TopicPartition(t, p)
        for t in topics
        if t in meta.topics and meta.topics[t].error is None
        for p in sorted(meta.topics[t].partitions)
    ]
    if not tps:
        return {}
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.committed(tps, timeout=timeout):
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        position = tp.offset if tp.offset >= 0 else low  # nothing committed: from the start
        out[(tp.topic, tp.partition)] = max(0, high - position)
    return out


class LagReporter(threading.Thread):
    def __init__(
        self, bootstrap: str, group: str, topics: list[str], interval: float = 5.0
    ) -> None:
        super().__init__(name=f"lag-{group}", daemon=True)
        self.bootstrap, self.group, self.topics, self.interval = bootstrap, group, topics, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
                "socket.timeout.ms": 5000,
            }
        )
        try:
            while not self.stopped.wait(self.interval):
                try:
                    for (topic, partition), lag in group_lag(consumer, self.topics).items():
                        CONSUMER_LAG.labels(self.group, topic, str(partition)).set(lag)
                except KafkaException as exc:  # broker away: keep the last values, try again
                    log.warning("consumer lag unavailable", group=self.group, error=str(exc))
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stopped.set()
