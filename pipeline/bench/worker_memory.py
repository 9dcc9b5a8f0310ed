"""A stream worker's memory over a long run: RSS while draining 1,000,000 events of 50,000
customers from a preloaded topic, and whether it still grows at the end.

Resident memory is read from ``/proc/<pid>/status`` (VmRSS) every few seconds together
with how many events the worker has committed; "still growing" compares the growth per
100,000 events over the last half of the run with the first half.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.progress import Progress

from pipeline.bench.worker import _fresh
from pipeline.bench.workload import preload, simulated_records
from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.kafka.inspect import group_lag

EVENTS_PER_TOUCH = 3.1  # the simulator's mix: a web visit is several events


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def growth_per_100k(samples: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) per 100,000 events."""
    if len(samples) < 2:
        return 0.0
    xs = [x for x, _ in samples]
    ys = [y for _, y in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in samples) / var * 100_000


def worker_memory(
    settings: Settings,
    logs: Path,
    events: int = 1_000_000,
    customers: int = 50_000,
    every_s: float = 5.0,
) -> dict[str, Any]:
    s, env = _fresh(settings)
    records = simulated_records(s, customers=customers, touches=int(events / EVENTS_PER_TOUCH))
    preload(s, records)
    total = len(records)
    del records
    topics = [s.topic("events"), s.topic("events.by_customer")]
    samples: list[tuple[int, float]] = []
    started = time.monotonic()
    with (
        crm_process(["worker", "--name", "memory0"], None, logs / "bench-memory.log", env=env) as p,
        Progress() as bar,
    ):
        task = bar.add_task("worker memory", total=total)
        while True:
            # Progress in events fully processed: the identity stage runs ahead, so count
            # what the profile stage still has to do (routed records not yet committed).
            lag = group_lag(s, s.worker_id, topics[:1])
            behind = group_lag(s, s.worker_id, topics[1:])
            done = max(0, total - lag - behind)
            samples.append((done, rss_mb(p.pid)))
            bar.update(task, completed=done)
            if lag == 0 and behind == 0:
                break
            if p.poll() is not None:
                raise RuntimeError(f"the worker exited with {p.returncode}; see {logs}")
            time.sleep(every_s)
    half = [x for x in samples if x[0] >= total / 2]
    first = [x for x in samples if 0 < x[0] < total / 2]
    late, early = growth_per_100k(half), growth_per_100k(first)
    return {
        "events": total,
        "customers": customers,
        "seconds": round(time.monotonic() - started, 1),
        "rss_mb_start": round(samples[0][1], 1),
        "rss_mb_half": round(half[0][1], 1) if half else None,
        "rss_mb_end": round(samples[-1][1], 1),
        "rss_mb_max": round(max(y for _, y in samples), 1),
        "growth_mb_per_100k_events_first_half": round(early, 2),
        "growth_mb_per_100k_events_second_half": round(late, 2),
        "still_growing": late > 1.0,
        "samples": [(x, round(y, 1)) for x, y in samples[:: max(1, len(samples) // 40)]],
    }
