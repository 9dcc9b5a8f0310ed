"""Everything a stream stage writes to Kafka, through one librdkafka producer.

Stages ``send`` without awaiting (a record is queued in a list, then handed to
librdkafka in one call); the agent awaits ``confirm`` once per batch, before it
acknowledges the batch's input offsets. So offsets never run ahead of outputs,
and the per-record cost is a C call instead of aiokafka's Python send path.
Records for one key keep their order: one producer, idempotent, acks=all.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal, Protocol

from pipeline.config import get_settings
from pipeline.kafka.producer import ConfirmedProducer, Positions, Record
from pipeline.metrics import DEAD_LETTERED
from pipeline.wire.dead_letter import DeadLetter


class Outputs(Protocol):
    """What a stage needs to write: queue records, then confirm them all."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None: ...

    async def confirm(self) -> Positions:
        """Wait until Kafka stored every queued record; raise TransientError otherwise."""
        ...


def dead_letter(
    out: Outputs,
    topic: str,
    raw: bytes,
    reason: str,
    kind: str,
    source: str,
    salt: str | Literal["settings"] | None = "settings",
) -> None:
    """Queue a record a stage cannot use to the dead-letter topic, with why, and count it.

    Emails and phones in it are hashed as the collector hashes them (a record on an
    internal topic came through the collector, but a poison record may not have):
    ``salt`` defaults to the process's settings (``CRM_PII_SALT``, none without
    ``CRM_HASH_PII``).
    """
    letter = DeadLetter.protected(
        raw,
        error_type=kind,
        reason=reason,
        source=source,
        received_at=datetime.now(UTC),
        salt=_settings_salt() if salt == "settings" else salt,
    )
    DEAD_LETTERED.labels(kind).inc()
    out.send(topic, None, letter.value, letter.headers())


@lru_cache(maxsize=1)
def _settings_salt() -> str | None:
    settings = get_settings()
    return settings.pii_salt.get_secret_value() if settings.hash_pii else None


class QueuedOutputs:
    """Queues records; subclasses decide where a confirmed batch goes."""

    def __init__(self) -> None:
        self._queued: list[Record] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        # None is a tombstone (compacted topics, table deletes); librdkafka takes it as is.
        self._queued.append(Record(topic, key, value, headers, partition))  # type: ignore[arg-type]

    def discard(self) -> None:
        """Drop what is queued: the step that queued it failed and will run again."""
        self._queued.clear()


class KafkaOutputs(QueuedOutputs):
    """``Outputs`` on a ``ConfirmedProducer``; reports offsets written to ``track`` topics."""

    def __init__(self, producer: ConfirmedProducer, track: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.producer = producer
        self.track = track

    def submit(self) -> Future[Positions]:
        """Hand everything queued to librdkafka now; the future resolves once stored."""
        queued, self._queued = self._queued, []
        if not queued:
            done: Future[Positions] = Future()
            done.set_result({})
            return done
        return self.producer.send(queued, self.track)

    async def confirm(self) -> Positions:
        return await asyncio.wrap_future(self.submit())
