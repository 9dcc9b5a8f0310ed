"""Live progress of a backfill: elements read, rate and ETA.

Beam metrics are only complete when a pipeline finishes, so the parse step also
ticks a process-wide counter. On the in-process DirectRunner a rich progress bar
in the driver reads it; on a cluster the bar stays at zero and the final summary
comes from Beam's metrics.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_count = 0
_lock = threading.Lock()


def tick(n: int = 1) -> None:
    global _count
    with _lock:
        _count += n


def read() -> int:
    return _count


def reset() -> None:
    global _count
    with _lock:
        _count = 0


class ProgressBar:
    """A rich bar fed by ``tick`` from a background thread; quiet when not a terminal."""

    def __init__(self, console: Console, total: int | None, label: str) -> None:
        self.console, self.total, self.label = console, total, label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _run(self) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9,.0f}/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(self.label, total=self.total, rate=0.0)
            while not self._stop.wait(0.25):
                done = read()
                rate = done / max(time.monotonic() - self.started, 1e-6)
                bar.update(task, completed=done, rate=rate)
            bar.update(task, completed=read())

    def __enter__(self) -> ProgressBar:
        reset()
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
