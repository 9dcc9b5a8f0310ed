"""Stream worker throughput, end-to-end freshness, and profile lookup latency.

* throughput: simulated events pre-loaded into fresh topics, one worker started,
  events/s from first progress until the consumer group has no lag (topic -> Redis);
* freshness: collector + worker running; background traffic at a fixed rate plus
  probe events for new customers; time from the collector's 200 to the probe's
  profile being readable in Redis;
* lookups: GET /v1/profiles/by/... against the API at a fixed rate (open loop).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from pipeline.bench.cleanup import bench_stores, new_tag
from pipeline.bench.loadgen import open_loop
from pipeline.bench.workload import preload, simulated_records
from pipeline.cli.processes import crm_process, http_service
from pipeline.config import Settings
from pipeline.kafka.inspect import group_lag
from pipeline.kafka.topics import ensure_topics
from pipeline.sources.simulator import Simulator
from pipeline.stores.redis_client import async_redis, sync_redis
from pipeline.wire.keys import RedisKeys


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else 0.0
    )


def _fresh(settings: Settings, partitions: int | None = None) -> tuple[Settings, dict[str, str]]:
    tag = f"{new_tag()}."
    n = partitions or settings.topic_partitions
    s = settings.model_copy(
        update={
            "topic_prefix": tag,
            "redis_prefix": tag,
            "worker_id": tag.rstrip("."),
            "topic_partitions": n,
        }
    )
    ensure_topics(s)
    env = {
        "CRM_TOPIC_PREFIX": tag,
        "CRM_REDIS_PREFIX": tag,
        "CRM_WORKER_ID": s.worker_id,
        "CRM_TOPIC_PARTITIONS": str(n),
        "CRM_LOG_LEVEL": "WARNING",
    }
    return s, env


def worker_throughput(
    settings: Settings,
    logs: Path,
    touches: int,
    workers: int = 1,
    partitions: int | None = None,
    customers: int = 2000,
) -> dict[str, Any]:
    """Events/s of ``workers`` processes draining a preloaded topic into Redis."""
    s, env = _fresh(settings, partitions)
    records = simulated_records(s, customers=customers, touches=touches)
    preload(s, records)
    topics = [s.topic("events"), s.topic("events.by_customer")]
    with ExitStack() as stack:
        for i in range(workers):
            log = logs / f"bench-worker-{i}.log"
            stack.enter_context(crm_process(["worker", "--name", f"bench{i}"], None, log, env=env))
        start_lag = group_lag(s, s.worker_id, topics[:1])
        started = None
        while True:
            # The clock starts at the identity stage's first commit on the input topic
            # (Faust commits every second; the stop, no lag left, has the same grain).
            # Comparing the lag of both topics with the input's start lag started it
            # seconds late: the identity stage runs ahead and fills events.by_customer,
            # so the sum stays above the start lag long after processing began.
            if started is None and group_lag(s, s.worker_id, topics[:1]) < start_lag:
                started = time.monotonic()
            if started and group_lag(s, s.worker_id, topics) == 0:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    return {
        "workers": workers,
        "partitions": s.topic_partitions,
        "events": len(records),
        "seconds": round(elapsed, 2),
        "events_per_second": round(len(records) / elapsed),
        "target": 10000 if workers == 1 else None,
        "aim": 20000 if workers == 1 else None,
    }


def scaling(settings: Settings, logs: Path, touches: int) -> list[dict[str, Any]]:
    """The scaling table: 1 and 2 worker processes, 6 and 12 partitions."""
    return [
        worker_throughput(settings, logs, touches, workers=w, partitions=p)
        for p in (6, 12)
        for w in (1, 2)
    ]


async def _freshness(
    base: str, key: str, s: Settings, rate: float, seconds: float
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Probe events for new customers amid background traffic: ack -> Redis, ack -> ClickHouse."""
    r = async_redis(s)
    keys = RedisKeys(s.redis_prefix)
    sql = httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.sql_port}", timeout=10)
    sim = Simulator(base, key, 2000, seed=3, invalid_share=0.0)
    delays: list[float] = []
    ch_delays: list[float] = []
    failed: list[int] = []
    slow: list[tuple[float, float]] = []  # (seconds into the run the probe was acked, delay)
    t0 = time.perf_counter()

    async def customer_of(uid: str) -> str | None:
        cid = await r.get(keys.identifier("user_id", uid))
        return cid.decode() if isinstance(cid, bytes) else cid

    async def in_clickhouse(uid: str, event_id: str, acked: float) -> None:
        deadline = acked + 20
        cid = None
        while cid is None:  # the identity stage stores the identifier before the sink sees it
            if time.perf_counter() > deadline:
                return
            cid = await customer_of(uid)
            if cid is None:
                await asyncio.sleep(0.05)
        # By the events table's sort key (customer_id, event_time, event_id): a lookup by
        # event id alone scans the table, and ~1,000 such polls/s took most of a core from
        # the sink process the probe is timing.
        query = (
            f"SELECT count() FROM events WHERE customer_id = '{cid}' AND event_id = '{event_id}'"
        )
        while time.perf_counter() < deadline:
            try:
                resp = await sql.post("/", content=query)
                # the sink's ClickHouse HTTP endpoint: TabSeparated by default
                if resp.status_code == 200 and int(resp.text.strip() or 0):
                    ch_delays.append(time.perf_counter() - acked)
                    return
            except httpx.HTTPError:
                pass
            # Every 100 ms (50 ms before): the sink serves these queries in its own process,
            # under the lock its inserts take; finer polling timed the probes' own load.
            await asyncio.sleep(0.1)

    async def in_redis(uid: str, acked: float) -> None:
        deadline = acked + 10
        while time.perf_counter() < deadline:
            cid_s = await customer_of(uid)
            if cid_s and await r.hexists(keys.profile(cid_s), "v"):
                delays.append(time.perf_counter() - acked)
                slow.append((round(acked - t0, 1), round(delays[-1] * 1000)))
                return
            await asyncio.sleep(0.002)

    async def probe(client: httpx.AsyncClient, n: int) -> None:
        uid, eid = f"probe-{uuid.uuid4().hex[:10]}", f"probe-{uuid.uuid4().hex}"
        body = {"userId": uid, "event": "Probe", "properties": {"n": n}, "messageId": eid}
        try:
            resp = await client.post("/v1/track", json=body)
        except httpx.HTTPError:
            failed.append(n)  # the overloaded collector dropped the connection
            return
        acked = time.perf_counter()
        if resp.status_code == 200:
            await asyncio.gather(in_redis(uid, acked), in_clickhouse(uid, eid, acked))

    async with httpx.AsyncClient(base_url=base, auth=(key, ""), timeout=30) as client:
        background = asyncio.create_task(sim.run(rate, seconds))
        probes = []
        for n in range(int(seconds * 5)):  # 5 probes/s: 300 in a 60 s run
            probes.append(asyncio.create_task(probe(client, n)))
            await asyncio.sleep(0.2)
        await asyncio.gather(background, *probes)
    await r.aclose()
    await sql.aclose()
    stats = background.result()
    achieved = round(stats.accepted / max(stats.seconds, 1e-9))
    slowest = sorted(slow, key=lambda probe: -probe[1])[:10]
    return (
        delays,
        ch_delays,
        {
            "achieved_events_per_second": achieved,
            "probes_failed": len(failed),
            # When the tail happened tells a warm-up from a periodic stall from a backlog.
            "slowest_probes_at_s_ms": slowest,
        },
    )


def run_worker_bench(settings: Settings, console: Console, touches: int) -> dict[str, Any]:
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"worker_throughput": worker_throughput(settings, logs, touches)}
    console.print(result)
    if os.environ.get("CRM_BENCH_SCALING", "1") == "1":
        result["scaling"] = scaling(settings, logs, touches)
        console.print(result["scaling"])
    # Freshness runs with as many worker processes as the load needs (one per core here).
    workers = int(os.environ.get("CRM_BENCH_WORKERS", "2"))
    seconds = float(os.environ.get("CRM_BENCH_SECONDS", "60"))
    s, env = _fresh(settings)
    ch = f"chdb://{bench_stores(settings) / s.topic_prefix.rstrip('.')}"
    s = s.model_copy(update={"clickhouse_url": ch, "sql_port": settings.sql_port + 13})
    env = {**env, "CRM_CLICKHOUSE_URL": ch, "CRM_SQL_PORT": str(s.sql_port)}
    cport, aport = settings.collector_port + 19, settings.api_port + 19
    key = sorted(settings.write_key_set)[0]
    api_env = {**env, "CRM_API_WORKERS": "2"}  # one process saturates near 1,800 requests/s
    with http_service("api", aport, logs / "bench-api.log", api_env), ExitStack() as stack:
        for i in range(workers):
            log = logs / f"bench-fresh-worker-{i}.log"
            stack.enter_context(crm_process(["worker", "--name", f"fresh{i}"], None, log, env=env))
        stack.enter_context(http_service("collector", cport, logs / "bench-collector2.log", env))
        stack.enter_context(
            crm_process(["sink", "clickhouse"], None, logs / "bench-sink2.log", env=env)
        )
        time.sleep(8 + 4 * workers)  # let the workers join their group before measuring
        rate = 5000.0
        delays, ch_delays, load = asyncio.run(
            _freshness(f"http://127.0.0.1:{cport}", key, s, rate, seconds)
        )
        result["freshness"] = {
            "worker_processes": workers,
            "seconds": seconds,
            "probes_sent": int(seconds * 5),
            "background_events_per_second": rate,
            **load,
            "probes": len(delays),
            "p50_ms": _pct(delays, 0.5),
            "p99_ms": _pct(delays, 0.99),
            "target_p99_ms": 250,
        }
        result["clickhouse_visibility"] = {
            "probes": len(ch_delays),
            "p50_ms": _pct(ch_delays, 0.5),
            "p99_ms": _pct(ch_delays, 0.99),
            "target_ms": 2000,
        }
        console.print(result["freshness"], result["clickhouse_visibility"])
        # Lookups measure the API, not a machine still draining the freshness backlog:
        # workers, collector and sink stop first, and the API is warmed before timing.
        stack.close()
        r = sync_redis(s)
        ids = [
            k.decode().removeprefix(RedisKeys(s.redis_prefix).identifiers("user_id")[:-1])
            for k in r.scan_iter(RedisKeys(s.redis_prefix).identifiers("user_id"), count=1000)
        ]
        paths = [f"/v1/profiles/by/user_id/{i}" for i in ids[:2000]] or ["/v1/profiles/none"]
        headers = {"Authorization": f"Bearer {sorted(settings.read_key_set)[0]}"}
        asyncio.run(open_loop("127.0.0.1", aport, paths, 500, 2, headers, 64))  # warm-up
        run = asyncio.run(open_loop("127.0.0.1", aport, paths, 2000, 10, headers, 64))
        result["lookups"] = run.summary(2000)
        console.print(result["lookups"])
    return result
