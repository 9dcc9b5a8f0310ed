"""Reading a request body the way a public endpoint must: bounded in size and in time.

Shared by the collector and the API. A body larger than ``limit`` is refused as soon as
that is known (declared length, or bytes read so far), never read whole; a client that
sends slower than ``timeout_s`` allows for the whole body (a slowloris) gets 408.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request


class BodyError(Exception):
    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


async def read_bounded(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"body is {declared} bytes, limit is {limit}", "too_large")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, f"body exceeds {limit} bytes", "too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(
            408, f"body not received within {timeout_s:g} s (CRM_BODY_TIMEOUT_S)", "timeout"
        ) from None
    return b"".join(chunks)
