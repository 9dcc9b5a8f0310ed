"""Personalization latency under concurrent load, and how fast a segment change shows.

* decisions: simulated customers are run through a real worker into fresh Redis
  keys; then ``GET /v1/personalize/by/user_id/...`` (every slot of the shipped
  rules) at a fixed request rate against one ``crm api`` process;
* segment visibility: collector + worker running; probe purchases that put a
  new customer into ``high-value``; time from the collector's 200 to the
  customer being in the Redis segment set (what email and ad tools read).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from pipeline.bench.loadgen import open_loop
from pipeline.bench.worker import _fresh, _pct
from pipeline.bench.workload import preload, simulated_records
from pipeline.cli.processes import crm_process, http_service
from pipeline.config import Settings
from pipeline.kafka.inspect import group_lag
from pipeline.stores.redis_client import async_redis, sync_redis
from pipeline.wire.keys import RedisKeys


def _fill(s: Settings, env: dict[str, str], logs: Path, touches: int) -> int:
    records = simulated_records(s, customers=3000, touches=touches)
    preload(s, records)
    topics = [s.topic("events"), s.topic("events.by_customer")]
    with crm_process(["worker", "--name", "fill"], None, logs / "bench-pers-fill.log", env=env):
        deadline = time.monotonic() + 600
        time.sleep(5)
        while group_lag(s, s.worker_id, topics) > 0 and time.monotonic() < deadline:
            time.sleep(1)
    return len(records)


async def _segment_probes(base: str, key: str, s: Settings, probes: int) -> list[float]:
    r = async_redis(s)
    delays: list[float] = []
    keys = RedisKeys(s.redis_prefix)

    async def probe(client: httpx.AsyncClient) -> None:
        card = f"BENCH-{uuid.uuid4().hex[:10]}"
        body = {
            "transactionId": card,
            "storeId": "bench",
            "loyaltyId": card,
            "items": [{"sku": "B-1", "category": "home", "price": 350.0}],
            "total": 350.0,
        }
        resp = await client.post("/v1/pos/transactions", json=body)
        acked = time.perf_counter()
        if resp.status_code != 200:
            return
        deadline = acked + 10
        while time.perf_counter() < deadline:
            cid = await r.get(keys.identifier("loyalty_id", card))
            member = cid.decode() if isinstance(cid, bytes) else cid
            if member and await r.zscore(keys.segment_of("high-value", member), member) is not None:
                delays.append(time.perf_counter() - acked)
                return
            await asyncio.sleep(0.005)

    async with httpx.AsyncClient(base_url=base, auth=(key, ""), timeout=10) as client:
        tasks = []
        for _ in range(probes):
            tasks.append(asyncio.create_task(probe(client)))
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks)
    await r.aclose()
    return delays


def run_personalization_bench(
    settings: Settings, console: Console, touches: int, rate: float = 2000.0
) -> dict[str, Any]:
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    s, env = _fresh(settings)
    events = _fill(s, env, logs, touches)
    r = sync_redis(s)
    ids = [
        k.decode().removeprefix(RedisKeys(s.redis_prefix).identifiers("user_id")[:-1])
        for k in r.scan_iter(RedisKeys(s.redis_prefix).identifiers("user_id"), count=1000)
    ]
    paths = [f"/v1/personalize/by/user_id/{i}?city=Vilnius" for i in ids[:3000]]
    paths = paths or ["/v1/personalize/nobody"]
    result: dict[str, Any] = {"profiles_events": events, "known_customers": len(ids)}
    headers = {"Authorization": f"Bearer {_read_key(settings)}"}
    result["decisions"] = []
    aport, cport = settings.api_port + 23, settings.collector_port + 23
    for workers, req_rate in ((1, rate / 2), (2, rate)):
        api_env = {**env, "CRM_API_WORKERS": str(workers)}
        with http_service("api", aport, logs / "bench-pers-api.log", api_env):
            time.sleep(2 * workers)  # every process ready
            asyncio.run(open_loop("127.0.0.1", aport, paths, 200, 2, headers))  # warm up
            run = asyncio.run(open_loop("127.0.0.1", aport, paths, req_rate, 15, headers, 64))
        result["decisions"].append({"api_processes": workers, **run.summary(req_rate)})
    console.print(result["decisions"])
    with (
        crm_process(["worker", "--name", "fill"], None, logs / "bench-pers-worker.log", env=env),
        http_service("collector", cport, logs / "bench-pers-collector.log", env),
    ):
        time.sleep(8)  # the worker rejoins its group
        key = sorted(settings.write_key_set)[0]
        delays = asyncio.run(_segment_probes(f"http://127.0.0.1:{cport}", key, s, 100))
    result["segment_visibility"] = {
        "probes": 100,
        "seen": len(delays),
        "p50_ms": _pct(delays, 0.5),
        "p99_ms": _pct(delays, 0.99),
        "target_ms": 500,
    }
    console.print(result["segment_visibility"])
    return result


def _read_key(settings: Settings) -> str:
    return sorted(settings.read_key_set)[0]
