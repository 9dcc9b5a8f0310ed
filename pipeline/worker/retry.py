"""Waiting out a dependency that is down, instead of crashing the stage.

A stream stage's step either finishes or fails before its input is acknowledged, so a
step that failed because Redis (or Kafka) was unavailable can simply run again: the
stages are idempotent under replay. The step is retried with backoff, logged and
counted, for as long as the dependency is away; an error that is not an outage (a bug,
bad data) still propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.errors import TransientError
from pipeline.logs import get_logger
from pipeline.metrics import RETRIES

log = get_logger("worker")
T = TypeVar("T")
OUTAGES: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    TransientError,
    ConnectionError,
    TimeoutError,
)
MAX_DELAY_S = 5.0


async def until_done(
    step: str,
    run: Callable[[], Awaitable[T]],
    *,
    before_retry: Callable[[], None] | None = None,
    first_delay_s: float = 0.1,
) -> T:
    """``await run()``, again and again while it fails with an outage."""
    delay = first_delay_s
    while True:
        try:
            return await run()
        except OUTAGES as exc:
            RETRIES.labels(step).inc()
            log.warning(
                "dependency unavailable, retrying",
                step=step,
                error=f"{type(exc).__name__}: {exc}"[:300],
                retry_in_s=delay,
            )
            if before_retry is not None:
                before_retry()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
