"""A stage step waits out an outage and still fails fast on anything else."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pipeline.worker.retry import until_done


def test_an_outage_is_retried_until_the_step_succeeds() -> None:
    calls: list[int] = []
    resets: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RedisConnectionError("Connection refused")
        return "done"

    result = asyncio.run(
        until_done("t", step, before_retry=lambda: resets.append(1), first_delay_s=0)
    )
    assert result == "done" and len(calls) == 3 and len(resets) == 2


def test_an_error_that_is_not_an_outage_propagates_at_once() -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        asyncio.run(until_done("t", step, first_delay_s=0))
    assert len(calls) == 1
