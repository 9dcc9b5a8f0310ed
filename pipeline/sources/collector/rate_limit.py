"""Requests per write key: a token bucket each, so one site's burst cannot starve the rest.

Per collector process (run N processes: N times the rate in all). Keys are checked
against the configured set before they reach here, so the buckets stay as few as the keys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class KeyRateLimiter:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def retry_after(self, key: str) -> int:
        """0 and one request counted, or whole seconds until the key may send again."""
        if not self.enabled:
            return 0
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))
