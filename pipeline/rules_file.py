"""A rules file that reloads itself when edited, and keeps serving the last good version.

An invalid edit never takes a website's personalization down: the error (with
the file line) is logged, counted and shown by ``GET /v1/personalize/rules``,
and the previous rules keep answering until the file is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pipeline.logs import get_logger
from pipeline.metrics import RULES_RELOADS
from pipeline.transforms.conditions import ConfigError

log = get_logger("rules")
T = TypeVar("T")


class ReloadingFile(Generic[T]):
    def __init__(
        self,
        path: Path,
        load: Callable[[Path], T],
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path, self.load, self.interval, self.clock = path, load, interval, clock
        self.value: T = load(path)  # invalid at start: fail loudly, there is nothing to keep
        self.error: str | None = None
        self.loaded_at = datetime.now(UTC)
        self._stamp = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> T:
        now = self.clock()
        if now - self._checked >= self.interval:
            self._checked = now
            self.refresh()
        return self.value

    def refresh(self) -> bool:
        """Reload if the file changed; returns whether new rules are now serving."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        name = self.path.name
        try:
            value = self.load(self.path)
        except ConfigError as exc:
            self.error = str(exc)
            RULES_RELOADS.labels(name, "invalid").inc()
            log.error("rules file invalid; previous rules keep serving", error=self.error)
            return False
        self.value, self.error = value, None
        self.loaded_at = datetime.now(UTC)
        RULES_RELOADS.labels(name, "loaded").inc()
        log.info("rules file reloaded", file=str(self.path))
        return True

    def status(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "loaded_at": self.loaded_at.isoformat(),
            "digest": getattr(self.value, "digest", ""),
            "error": self.error,
        }
