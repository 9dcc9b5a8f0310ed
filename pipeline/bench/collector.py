"""Collector throughput and latency through ``/v1/batch``.

The collector runs as its own process pinned to one core (``taskset -c 0``)
with the real broker behind it; this process generates load from pre-encoded
batches so the generator costs little. Results: events/s and request p50/p99.
"""

from __future__ import annotations

import asyncio
import json
import platform
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from rich.console import Console

from pipeline.cli.processes import crm_process
from pipeline.config import Settings

BATCH = 100
CONCURRENCY = 8


def _bodies(n_batches: int) -> list[bytes]:
    now = datetime.now(UTC).isoformat()
    out = []
    for b in range(n_batches):
        events = [
            {
                "type": "track",
                "event": "Product Viewed",
                "messageId": uuid.uuid4().hex,
                "anonymousId": f"ck-{(b * BATCH + i) % 50_000}",
                "timestamp": now,
                "properties": {"sku": f"SKU-{i}", "category": "shoes", "price": 59.9},
                "context": {"userAgent": "Mozilla/5.0", "ip": "10.0.0.1"},
            }
            for i in range(BATCH)
        ]
        out.append(msgspec.json.encode({"batch": events, "sentAt": now}))
    return out


async def _load(
    base: str, key: str, bodies: list[bytes], concurrency: int = CONCURRENCY
) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            body = queue.get_nowait()
            t0 = time.perf_counter()
            resp = await client.post(
                "/v1/batch", content=body, headers={"content-type": "application/json"}
            )
            latencies.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, auth=(key, ""), limits=limits, timeout=30
    ) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, elapsed, errors


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run_collector_bench(
    settings: Settings, console: Console, out: Path, events: int
) -> dict[str, Any]:
    port = settings.collector_port + 17
    base = f"http://127.0.0.1:{port}"
    args = ["collector", "--port", str(port)]
    taskset = shutil.which("taskset")
    key = sorted(settings.write_key_set)[0]
    bodies = _bodies(max(1, events // BATCH))
    warm = bodies[: max(1, len(bodies) // 20)]
    env = {"CRM_LOG_LEVEL": "WARNING"}
    with crm_process(
        args, f"{base}/health", settings.data_dir / "logs" / "bench-collector.log", env=env
    ) as proc:
        if taskset:
            import subprocess

            subprocess.run([taskset, "-pc", "0", str(proc.pid)], check=False, capture_output=True)
        asyncio.run(_load(base, key, warm))
        latencies, elapsed, errors = asyncio.run(_load(base, key, bodies))
        light, light_elapsed, _ = asyncio.run(_load(base, key, bodies[: len(bodies) // 4], 1))
    sent = len(bodies) * BATCH
    result = {
        "benchmark": "collector_batch",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "collector_cores": 1 if taskset else None,
        "events": sent,
        "batch_size": BATCH,
        "concurrency": CONCURRENCY,
        "seconds": round(elapsed, 3),
        "events_per_second": round(sent / elapsed),
        "requests": len(latencies),
        "errors": errors,
        "latency_ms": {
            "p50": round(_pct(latencies, 0.50), 2),
            "p99": round(_pct(latencies, 0.99), 2),
            "mean": round(statistics.fmean(latencies) * 1000, 2),
        },
        "one_request_in_flight": {
            "events_per_second": round(len(light) * BATCH / light_elapsed),
            "latency_ms": {"p50": round(_pct(light, 0.50), 2), "p99": round(_pct(light, 0.99), 2)},
        },
        "targets": {"events_per_second": 20000, "p99_ms": 20},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "collector.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print_json(json.dumps(result))
    return result
