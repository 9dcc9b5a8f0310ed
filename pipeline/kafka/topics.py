"""Topic layout and administration through the Kafka admin API.

All topics share one partition count so they are co-partitioned by key
(customer id or strongest identifier): a worker owning partition 3 of one topic
owns partition 3 of every topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline.config import Settings

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    logical: str
    purpose: str
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "events",
        "valid, enriched events keyed by strongest identifier",
        {"retention.ms": str(WEEK_MS), "compression.type": "producer"},
    ),
    TopicSpec(
        "events.dlq",
        "rejected events: original bytes, reason in headers",
        {"retention.ms": str(4 * WEEK_MS)},
    ),
    TopicSpec(
        "events.by_customer",
        "events re-keyed by resolved customer id",
        {"retention.ms": str(WEEK_MS)},
    ),
    TopicSpec(
        "identity.merges",
        "merge log: every identity decision with its cause",
        {"retention.ms": "-1"},
    ),
    TopicSpec("profiles", "latest profile per customer (changelog)", {"cleanup.policy": "compact"}),
    TopicSpec(
        "segments.changes",
        "segment entries and exits for downstream tools",
        {"retention.ms": str(4 * WEEK_MS)},
    ),
)


def replica_config(settings: Settings) -> dict[str, str]:
    """Topic config every topic we or Faust create carries: how many replicas must have a
    write before an acks=all producer hears it was stored."""
    return {"min.insync.replicas": str(settings.topic_min_insync)}


def admin(settings: Settings, quiet: bool = False) -> AdminClient:
    conf: dict[str, str | int | float | bool] = {"bootstrap.servers": settings.kafka_bootstrap}
    if quiet:  # while waiting for a starting broker, "connection refused" is expected
        conf["log_level"] = 0
    return AdminClient(conf)


def wait_ready(settings: Settings, timeout: float = 60.0) -> None:
    """Block until the cluster answers a metadata request with enough live brokers.

    Enough: as many as the replication factor, or creating topics would fail.
    """
    client = admin(settings, quiet=True)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            meta = client.list_topics(timeout=2)
            if len(meta.brokers) >= settings.topic_replication:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"Kafka at {settings.kafka_bootstrap} not ready after {timeout}s: {last}")


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create missing topics with the configured partitions and replication; return the names.

    An existing topic is left as it is: its replication factor does not change here
    (``kafka-reassign-partitions`` does that on a live cluster).
    """
    client = admin(settings)
    existing = set(client.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            settings.topic(s.logical),
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config={**replica_config(settings), **s.config},
        )
        for s in specs
        if settings.topic(s.logical) not in existing
    ]
    if not new:
        return []
    created = []
    for name, fut in client.create_topics(new, operation_timeout=30).items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent creator won
                raise
    return created
