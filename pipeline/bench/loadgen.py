"""An open-loop HTTP load generator: requests start on a fixed schedule, not when a reply came.

Latency is measured from each request's *scheduled* start, so a slow server
cannot hide its queueing by slowing the generator down (coordinated omission).
Raw asyncio streams over keep-alive HTTP/1.1 connections keep the generator's own
cost to a few tens of microseconds per request, so on a 2-core machine the
server, not the client, is what gets measured.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        """Percentile in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def summary(self, rate: float, target_p99_ms: float = 5) -> dict[str, Any]:
        """What the benchmark JSON records for one run."""
        return {
            "requests_per_second": rate,
            "achieved_per_second": round(self.achieved_rate),
            "requests": len(self.latencies),
            "errors": self.errors,
            "p50_ms": self.pct(0.5),
            "p99_ms": self.pct(0.99),
            "target_p99_ms": target_p99_ms,
        }


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def open_loop(
    host: str,
    port: int,
    paths: list[str],
    rate: float,
    seconds: float,
    headers: dict[str, str] | None = None,
    connections: int = 32,
) -> LoadResult:
    """GET ``paths`` round robin at ``rate`` requests/s for ``seconds``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for p in paths]
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    result = LoadResult()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                scheduled, request = item
                writer.write(request)
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.latencies.append(time.perf_counter() - scheduled)
                result.errors += status != 200
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, requests[i % len(requests)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    result.seconds = time.perf_counter() - start
    return result
