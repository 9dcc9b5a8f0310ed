"""A confluent-kafka group consumer that is replaced when it stays out of its group.

After a broker restart librdkafka's consumer sometimes never rejoins: its session times
out, it revokes its assignment, and its FindCoordinator/JoinGroup request then sits in the
coordinator connection's queue forever (logged as ``GroupCoordinator: Timed out 0
in-flight, 0 retry-queued, 1 out-queue`` once a minute) while the broker answers every
other request. A clean-clone CI run of the fault suite caught the ClickHouse sink so for
over four minutes with 2,400 events waiting. Closing the consumer and making a new one
(what a process restart does) rejoins at once; offsets are committed in Kafka and every
sink here is idempotent against re-reading, so nothing is lost or doubled.

The group's state comes from librdkafka's own statistics (``cgrp.state`` and
``cgrp.join_state``, emitted every ``STATS_INTERVAL_MS`` from ``consume``): the member is
steady when they are ``up`` and ``steady``. It is replaced when it has not been steady for
``rejoin_timeout_s`` while the cluster answers a metadata request (during a broker outage
a new consumer would be no better off: that is waited out).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException

from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.metrics import RETRIES

log = get_logger("kafka")
STATS_INTERVAL_MS = 5_000


def group_steady(stats: dict[str, Any]) -> bool | None:
    """Whether librdkafka's statistics show the member steady in its group (None: no group)."""
    cgrp = stats.get("cgrp")
    if not isinstance(cgrp, dict):
        return None
    return cgrp.get("state") == "up" and cgrp.get("join_state") == "steady"


class SteadinessClock:
    """Since when the member has not been steady, fed with statistics (pure, clock injected)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.unsteady_since: float | None = clock()  # a new member has yet to join

    def observe(self, stats: dict[str, Any]) -> None:
        steady = group_steady(stats)
        if steady is None:
            return
        if steady:
            self.unsteady_since = None
        elif self.unsteady_since is None:
            self.unsteady_since = self.clock()

    def unsteady_for(self) -> float:
        return 0.0 if self.unsteady_since is None else self.clock() - self.unsteady_since

    def reset(self) -> None:
        self.unsteady_since = self.clock()


class GroupMember:
    """Owns the consumer (``self.consumer``); ``heal()`` replaces it when it is stuck."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        process: str,
        rejoin_timeout_s: float,
        make: Callable[[dict[str, Any]], Consumer] | None = None,
    ) -> None:
        self.config, self.topics, self.process = config, topics, process
        self.rejoin_timeout_s = rejoin_timeout_s
        self.make = make
        self.steadiness = SteadinessClock()
        self.replaced = 0
        self.consumer = self._new()

    def _on_stats(self, raw: str) -> None:
        with contextlib.suppress(ValueError):  # a report cut short says nothing
            self.steadiness.observe(json.loads(raw))

    def _new(self) -> Consumer:
        consumer = (self.make or Consumer)(
            {
                **self.config,
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "stats_cb": self._on_stats,
            }
        )
        consumer.subscribe(self.topics)
        return consumer

    def stuck(self) -> bool:
        if self.steadiness.unsteady_for() <= self.rejoin_timeout_s:
            return False
        try:  # the broker answers: it is the member that is stuck, not the cluster away
            self.consumer.list_topics(timeout=5)
        except KafkaException:
            return False
        return True

    def heal(self) -> bool:
        """Replace the consumer when it is stuck outside its group; True when replaced.

        Call between batches: records read but not yet stored are read again by the new
        consumer from the last committed offsets.
        """
        if not self.stuck():
            return False
        old = self.consumer
        log.error(
            "consumer out of its group too long while the broker answers: replacing it",
            process=self.process,
            unsteady_s=round(self.steadiness.unsteady_for(), 1),
        )
        RETRIES.labels(f"{self.process}-rejoin").inc()
        # close() leaves the group; bounded by the session timeout, so not on this thread
        threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
        self.steadiness.reset()
        self.consumer = self._new()
        self.replaced += 1
        return True


def sink_member(settings: Settings, group: str, topics: list[str], process: str) -> GroupMember:
    """A sink's group member: manual commits (after the sink stored its records), from the
    earliest offset for a new group, and no poll deadline (a long insert is not a failure)."""
    return GroupMember(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.poll.interval.ms": 3_600_000,
        },
        topics,
        process,
        settings.kafka_rejoin_timeout_s,
    )


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.warning("closing the replaced consumer failed", error=str(exc)[:200])
