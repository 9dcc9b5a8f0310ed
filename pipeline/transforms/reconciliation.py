"""What the collector acknowledged against what the stores hold: lost, doubled, in flight.

Pure: the inputs are read by ``pipeline/cli/reconcile.py`` (Kafka's events topic, the
``events`` and ``failed_events`` tables, the profiles in Redis, the consumer groups' lag).

* **acknowledged**: distinct event ids on the events topic, the collector's only output
  for a valid event (it answers 200 only after Kafka stored it), per source;
* **stored**: acknowledged ids with at least one ``events`` row;
* **dead-lettered**: acknowledged ids with no ``events`` row but a ``failed_events`` row
  (a stage or the sink refused it: kept, with the reason, not lost);
* **duplicated**: ``events`` rows beyond the first per acknowledged id;
* **missing**: neither; while any consumer group still has lag they are **in flight**,
  once every group has caught up they are **lost**.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class SourceLedger:
    source: str
    acknowledged: int = 0
    stored: int = 0
    dead_lettered: int = 0
    duplicated: int = 0
    in_flight: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)


@dataclass
class Reconciliation:
    sources: list[SourceLedger]
    lag: int
    unacknowledged_rows: int  # events rows whose id the events topic does not hold
    profile_events: int | None  # sum of the live profiles' event counts (None: not read)
    stored_ids: int  # distinct acknowledged ids stored in ``events``

    @property
    def total(self) -> SourceLedger:
        out = SourceLedger("all")
        for s in self.sources:
            out.acknowledged += s.acknowledged
            out.stored += s.stored
            out.dead_lettered += s.dead_lettered
            out.duplicated += s.duplicated
            out.in_flight += s.in_flight
            out.lost += s.lost
        return out

    @property
    def profiles_off_by(self) -> int | None:
        """Profiles' event total minus distinct stored events (0 when they agree)."""
        return None if self.profile_events is None else self.profile_events - self.stored_ids

    @property
    def clean(self) -> bool:
        t = self.total
        return t.lost == 0 and t.duplicated == 0 and not self.profiles_off_by


def reconcile(
    acknowledged: Iterable[tuple[str, str]],
    stored: Mapping[str, int],
    failed: set[str],
    lag: int,
    profile_events: int | None = None,
    examples: int = 5,
) -> Reconciliation:
    """``acknowledged``: (source, event id) pairs, repeats allowed; ``stored``: id -> rows."""
    by_source: dict[str, SourceLedger] = {}
    seen: set[str] = set()
    for source, event_id in acknowledged:
        if event_id in seen:
            continue
        seen.add(event_id)
        ledger = by_source.get(source)
        if ledger is None:
            ledger = by_source[source] = SourceLedger(source)
        ledger.acknowledged += 1
        rows = stored.get(event_id, 0)
        if rows:
            ledger.stored += 1
            ledger.duplicated += rows - 1
        elif event_id in failed:
            ledger.dead_lettered += 1
        elif lag > 0:
            ledger.in_flight += 1
        else:
            ledger.lost += 1
            if len(ledger.lost_examples) < examples:
                ledger.lost_examples.append(event_id)
    stored_ids = sum(1 for event_id in stored if event_id in seen)
    return Reconciliation(
        sources=sorted(by_source.values(), key=lambda s: s.source),
        lag=lag,
        unacknowledged_rows=sum(n for event_id, n in stored.items() if event_id not in seen),
        profile_events=profile_events,
        stored_ids=stored_ids,
    )
