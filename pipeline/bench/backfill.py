"""Backfill throughput on the DirectRunner: compute only, and with Redis + ClickHouse writes."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.backfill.archive_io import size
from pipeline.backfill.run import run_backfill
from pipeline.bench.workload import simulated_records
from pipeline.config import Settings
from pipeline.sinks.archive import hour_bucket, write_part


def write_archive(settings: Settings, root: Path, customers: int, touches: int) -> int:
    """A simulated archive: the same files the archive sink writes."""
    values = [
        r.value
        for r in simulated_records(settings, customers, touches)
        if r.topic.endswith(".events")
    ]
    buckets: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for offset, value in enumerate(values):
        buckets[hour_bucket(value)].append((offset, value))
    for bucket, part in buckets.items():
        for i in range(0, len(part), 10_000):
            write_part(root, bucket, settings.topic("events"), 0, part[i : i + 10_000])
    return len(values)


def run_backfill_bench(settings: Settings, console: Console, touches: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="crm-bench-backfill-"))
    try:
        root = work / "archive"
        events = write_archive(settings, root, max(touches // 10, 100), touches)
        _files, total = size(str(root), None, None)
        out: dict[str, Any] = {"events": events, "runner": "DirectRunner"}
        for label, targets in (
            ("compute_only", ()),
            ("redis_and_clickhouse", ("redis", "clickhouse")),
        ):
            isolated = settings.model_copy(
                update={
                    "redis_prefix": f"bench-backfill-{label}:",
                    "clickhouse_url": f"chdb://{work / label}",
                }
            )
            result = run_backfill(
                isolated, archive=str(root), total=total, targets=targets, console=console
            )
            out[label] = {
                "seconds": round(result.seconds, 2),
                "events_per_second": round(result.rate, 1),
            }
            console.print(f"backfill {label}: {result.rate:,.0f} events/s")
        out["target_events_per_second"] = 20_000
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
