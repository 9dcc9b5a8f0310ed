"""A confluent-kafka producer whose sends can be awaited until the broker acknowledged.

The collector must not answer 200 for an event Kafka has not stored, so every
request awaits the delivery reports of its own records (``acks=all``, idempotent
producer). Delivery callbacks run on one background poll thread and resolve a
``concurrent.futures.Future`` per request.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, Message, Producer

from pipeline.errors import TransientError


class Record(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes  # a tombstone (None) is queued by the stream stages' Outputs only
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None  # None: by key, with Kafka's (Java) murmur2 partitioner


Positions = dict[tuple[str, int], int]  # (topic, partition) -> highest offset written


class _Batch:
    """Counts delivery reports of one send; resolves once all arrived."""

    __slots__ = ("error", "future", "positions", "remaining", "track")

    def __init__(self, count: int, track: frozenset[str] = frozenset()) -> None:
        self.remaining = count
        self.error: KafkaError | None = None
        self.future: Future[Positions] = Future()
        self.track = track  # topics whose written offsets the caller wants back
        self.positions: Positions = {}
        if count == 0:
            self.future.set_result(self.positions)

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = err
        elif err is None and self.track and msg.topic() in self.track:
            tp = (msg.topic() or "", msg.partition() or 0)
            self.positions[tp] = max(self.positions.get(tp, -1), msg.offset() or 0)
        self.remaining -= 1
        if self.remaining == 0:
            if self.error is None:
                self.future.set_result(self.positions)
            else:
                self.future.set_exception(TransientError(f"kafka: {self.error.str()}"))


class ConfirmedProducer:
    """Idempotent, acks=all producer with awaitable batches.

    ``ack_timeout_ms=0`` waits for the broker as long as it takes (librdkafka's infinite
    ``message.timeout.ms``): for a stream stage nobody is waiting on, waiting out a broker
    restart beats failing the batch and exiting.
    """

    def __init__(
        self, bootstrap: str, *, ack_timeout_ms: int = 5000, extra: dict[str, Any] | None = None
    ) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500_000,
            "message.timeout.ms": ack_timeout_ms,
            "socket.connection.setup.timeout.ms": max(1000, ack_timeout_ms or 10_000),
            # Java's (and aiokafka's) partitioner: a key lands on the same partition
            # whichever client wrote it, so Faust's table changelogs, our records on
            # events.by_customer and the CLI's Forget records stay co-partitioned.
            "partitioner": "murmur2_random",
        }
        conf.update(extra or {})
        self._producer = Producer(conf)
        self._ack_timeout = ack_timeout_ms / 1000 if ack_timeout_ms else math.inf
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def send(
        self, records: Sequence[Record], track: frozenset[str] = frozenset()
    ) -> Future[Positions]:
        """Queue records; the future completes when all are acknowledged or one failed.

        Its result holds the highest offset written per partition of the ``track`` topics.
        """
        batch = _Batch(len(records), track)
        deadline = time.monotonic() + self._ack_timeout
        for i, rec in enumerate(records):
            while True:
                try:
                    self._producer.produce(
                        rec.topic,
                        rec.value,
                        rec.key,
                        partition=-1 if rec.partition is None else rec.partition,
                        headers=rec.headers,  # type: ignore[arg-type]
                        on_delivery=batch.on_delivery,
                    )
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        # Records queued so far still report; the rest count as failed.
                        for _ in range(len(records) - i):
                            batch.on_delivery(KafkaError(KafkaError._QUEUE_FULL), None)  # type: ignore[arg-type]
                        return batch.future
                    time.sleep(0.005)
        return batch.future

    async def send_async(
        self, records: Sequence[Record], track: frozenset[str] = frozenset()
    ) -> Positions:
        """Await acknowledgement of all records; raise TransientError if any was not stored."""
        return await asyncio.wrap_future(self.send(records, track))

    def send_sync(self, records: Sequence[Record], timeout: float | None = None) -> None:
        self.send(records).result(
            timeout=timeout or (self._ack_timeout + 5 if math.isfinite(self._ack_timeout) else None)
        )

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued and stop the poll thread; return records still unsent."""
        remaining = int(self._producer.flush(timeout))
        self._closed.set()
        self._poller.join(timeout=1)
        return remaining
