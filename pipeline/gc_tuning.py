"""Garbage collector settings for the long-running stream processes.

CPython's cyclic collector runs a young collection every 700 container allocations and,
now and then, a full one that walks every live object. A worker holds hundreds of
thousands of long-lived objects (cached profiles, the models' dictionaries) and allocates
a few hundred short-lived containers per event, almost all freed by reference counting
alone: on the profile stage's benchmark the collector took 15-20% of the time
(docs/worker-costs.md, sixth pass). After start-up the process freezes what it has built
(modules, rules, restored models: never garbage, never scanned again) and collects young
objects every ``CRM_GC_THRESHOLD`` allocations instead. Cycles are still collected, later.
"""

from __future__ import annotations

import gc

from pipeline.config import Settings
from pipeline.logs import get_logger

log = get_logger("gc")


def tune(settings: Settings) -> None:
    """Freeze what start-up allocated and space young collections out (0: Python's defaults)."""
    if settings.gc_threshold <= 0:
        return
    gc.collect()  # start-up garbage first: frozen objects are never collected
    gc.freeze()
    gc.set_threshold(settings.gc_threshold, 20, 10)
    log.info("gc tuned", threshold=settings.gc_threshold, frozen=gc.get_freeze_count())
