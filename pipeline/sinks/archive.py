"""The raw archive: valid events as hourly, immutable JSON Lines files for Beam backfills.

Layout: ``<archive>/date=YYYY-MM-DD/hour=HH/part-<partition>-<first>-<last>.jsonl.gz``
(hour of the collector's ``receivedAt``, UTC), each with a manifest
``....manifest.json`` listing topic, partition, offset range, record count and a
SHA-256 of the file. Files are written to a temporary name and renamed, so a
reader never sees half a file, and never rewritten. Exactly once without an
intent log: the archive is its own progress record; on start the highest
archived offset per partition is read from the manifests and everything at or
below it is skipped, so a crash between writing a file and committing the
offsets cannot produce a second copy.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, Message, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.commit import commit_until_done
from pipeline.kafka.group_member import sink_member
from pipeline.logs import get_logger
from pipeline.metrics import EVENTS_OUT, SINK_SECONDS

log = get_logger("archive")


class _Received(msgspec.Struct, rename="camel"):
    received_at: datetime | None = None
    replayed: bool = False


_received = msgspec.json.Decoder(_Received)


def _meta(value: bytes) -> _Received:
    try:
        return _received.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _Received()


def hour_bucket(value: bytes) -> str:
    """``date=YYYY-MM-DD/hour=HH`` of the event's receipt (ingestion time, UTC)."""
    ts = (_meta(value).received_at or datetime.now(UTC)).astimezone(UTC)
    return f"date={ts:%Y-%m-%d}/hour={ts:%H}"


def archived_offsets(root: Path, topic: str) -> dict[int, int]:
    """Highest archived offset per partition, from the manifests."""
    out: dict[int, int] = {}
    for manifest in root.glob("date=*/hour=*/*.manifest.json"):
        doc = json.loads(manifest.read_text())
        if doc["topic"] == topic:
            p = int(doc["partition"])
            out[p] = max(out.get(p, -1), int(doc["last_offset"]))
    return out


def write_part(
    root: Path, bucket: str, topic: str, partition: int, msgs: list[tuple[int, bytes]]
) -> Path:
    """One immutable file of (offset, value) records, then its manifest."""
    first, last = msgs[0][0], msgs[-1][0]
    directory = root / bucket
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{partition:03d}-{first:012d}-{last:012d}"
    path = directory / f"{name}.jsonl.gz"
    tmp = directory / f".{name}.tmp"
    with gzip.open(tmp, "wb") as fh:
        for _offset, value in msgs:
            fh.write(value + b"\n")
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(path)
    manifest = {
        "topic": topic,
        "partition": partition,
        "first_offset": first,
        "last_offset": last,
        "records": len(msgs),
        "file": path.name,
        "sha256": digest,
        "written_at": datetime.now(UTC).isoformat(),
    }
    mtmp = directory / f".{name}.manifest.tmp"
    mtmp.write_text(json.dumps(manifest))
    mtmp.replace(directory / f"{name}.manifest.json")
    return path


def consumer_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}crm-archive"


class ArchiveSink:
    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic("events")
        self.root = root or settings.data_dir / "archive"
        self.root.mkdir(parents=True, exist_ok=True)
        self.done = archived_offsets(self.root, self.topic)
        self.stop = threading.Event()
        self.member = sink_member(settings, consumer_group(settings), [self.topic], "archive")

    @property
    def consumer(self) -> Consumer:
        return self.member.consumer

    def flush(self, msgs: list[Message]) -> int:
        groups: dict[tuple[int, str], list[tuple[int, bytes]]] = defaultdict(list)
        last: dict[int, int] = {}
        for m in msgs:
            p, off = m.partition() or 0, m.offset() or 0
            last[p] = max(last.get(p, -1), off)
            if off <= self.done.get(p, -1):
                continue  # archived before a crash, offsets not yet committed
            value = m.value() or b""
            if _meta(value).replayed:
                continue  # `crm replay` re-published it: the original is archived already
            groups[(p, hour_bucket(value))].append((off, value))
        start = time.perf_counter()
        written = 0
        for (p, bucket), part in sorted(groups.items()):
            write_part(self.root, bucket, self.topic, p, part)
            self.done[p] = max(self.done.get(p, -1), part[-1][0])
            written += len(part)
        if last:  # the manifests are the progress record: a failed commit only re-reads
            offsets = [TopicPartition(self.topic, p, o + 1) for p, o in last.items()]
            commit_until_done(self.consumer, offsets, self.stop, "archive", self.member.stuck)
        SINK_SECONDS.labels("archive").observe(time.perf_counter() - start)
        EVENTS_OUT.labels("archive", "events").inc(written)
        return written

    def run(self, stop: threading.Event, max_rows: int = 50_000, max_wait: float = 5.0) -> None:
        self.stop = stop
        try:
            while not stop.is_set():
                msgs: list[Message] = []
                deadline = time.monotonic() + max_wait
                while len(msgs) < max_rows and (left := deadline - time.monotonic()) > 0:
                    msgs += [
                        m
                        for m in self.consumer.consume(10_000, min(left, 0.5))
                        if m.error() is None
                    ]
                if msgs:
                    self.flush(msgs)
                else:
                    self.member.heal()
        finally:
            self.consumer.close()


def read_archive(root: Path, start: str | None = None, end: str | None = None) -> list[Any]:
    """Archive files with dates in [start, end] (YYYY-MM-DD), in name order (for backfills)."""
    files = sorted(root.glob("date=*/hour=*/part-*.jsonl.gz"))
    out = []
    for f in files:
        day = f.parent.parent.name.removeprefix("date=")
        if (start is None or day >= start) and (end is None or day <= end):
            out.append(f)
    return out
