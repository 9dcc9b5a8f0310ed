"""Test doubles shipped with the package, so agents and routes test without services."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TypeVar

from pipeline.errors import TransientError
from pipeline.kafka.producer import ConfirmedProducer, Positions, Record
from pipeline.sinks.base import Sink
from pipeline.worker.outputs import QueuedOutputs

T = TypeVar("T")


class ListProducer(ConfirmedProducer):
    """Keeps records in a list; ``fail=True`` behaves like an unreachable broker."""

    def __init__(self, fail: bool = False) -> None:  # no super(): no Kafka client
        self.records: list[Record] = []
        self.fail = fail

    def send(
        self, records: Sequence[Record], track: frozenset[str] = frozenset()
    ) -> Future[Positions]:
        future: Future[Positions] = Future()
        if self.fail:
            future.set_exception(TransientError("kafka: broker unreachable (test)"))
        else:
            self.records.extend(records)
            future.set_result({})
        return future

    def close(self, timeout: float = 10.0) -> int:
        return 0

    def on(self, topic_suffix: str) -> list[Record]:
        return [r for r in self.records if r.topic.endswith(topic_suffix)]


class ListSink(Sink[T]):
    """Collects flushed items in ``written``."""

    def __init__(self) -> None:
        self.pending: list[T] = []
        self.written: list[T] = []

    def add(self, item: T) -> None:
        self.pending.append(item)

    async def flush(self) -> int:
        n = len(self.pending)
        self.written.extend(self.pending)
        self.pending = []
        return n


class Outbox(QueuedOutputs):
    """Stage outputs kept in a list (the ``Outputs`` interface of the stream stages)."""

    async def confirm(self) -> Positions:
        return {}

    def take(self) -> list[tuple[str, bytes | None, bytes | None]]:
        out, self._queued = self._queued, []
        return [(r.topic, r.key, r.value) for r in out]
