"""``crm replay``: re-publish archived events into Kafka for the live pipeline.

Events keep their event ids and are marked ``replayed``; the stages are
idempotent by event id (the identity stage routes a known event id to the
customer it went to first, profiles skip ids they have seen, the ClickHouse sink
checks ids it already wrote, the archive skips replayed events), so a replay
adds only what is missing. Rate limited with a token bucket so the live
pipeline keeps its latency.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.backfill.inputs import read_lines
from pipeline.config import Settings
from pipeline.events import Event
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.transforms.identifiers import strongest

_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def replayed_records(files: list[Path], topic: str) -> Iterator[Record]:
    for path in files:
        for raw in read_lines(str(path)):
            event = msgspec.structs.replace(_decoder.decode(raw), replayed=True)
            key = strongest(event.identities)
            yield Record(
                topic, f"{key[0]}:{key[1]}".encode() if key else None, _encoder.encode(event)
            )


class TokenBucket:
    """At most ``rate`` tokens per second, bursts of a tenth of a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate / 10, 1.0)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def take(self, n: int) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= n or (n > self.capacity and self.tokens >= self.capacity):
                self.tokens -= n
                return
            time.sleep((min(n, self.capacity) - self.tokens) / self.rate)


def replay(
    settings: Settings,
    files: list[Path],
    *,
    topic: str,
    rate: float,
    total: int | None,
    console: Console,
) -> int:
    bucket = TokenBucket(rate)
    chunk_size = max(1, min(1000, int(rate / 10)))
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    sent = 0
    columns = (
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("replay", total=total)
            chunk: list[Record] = []
            for record in replayed_records(files, topic):
                chunk.append(record)
                if len(chunk) >= chunk_size:
                    bucket.take(len(chunk))
                    producer.send_sync(chunk, timeout=60)
                    sent += len(chunk)
                    bar.update(task, completed=sent)
                    chunk = []
            if chunk:
                bucket.take(len(chunk))
                producer.send_sync(chunk, timeout=60)
                sent += len(chunk)
                bar.update(task, completed=sent)
    finally:
        producer.close()
    return sent
