"""Which event records are copies of an ``events`` row written earlier: pure decisions.

Only two kinds of record can be a copy, and both say so on the wire:

* ``repeat``: the identity stage had already routed this event id within
  ``CRM_DEDUPE_WINDOW_S`` (a client's retry, the stage's own replay after a crash, a second
  copy in one batch). It lands at the customer the first copy went to (the stage's
  assignment in Redis), so in the same partition and in the ``events`` sort key
  ``(customer_id, event_time, event_id)``: the sink looks it up by customer and event id,
  which reads a few granules;
* ``replayed``: re-published by ``crm replay``, possibly long after and possibly resolved to
  another customer since: looked up by event id alone (a scan of that column).

Every other record is inserted without a lookup. A record is a copy when a row (or an
earlier record of the same batch) holds its event id at another position
(``partition:offset``); a record read again at its own position -- the sink replaying its
own batch after a crash -- is not a copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

REPEATS_SQL = (
    "SELECT customer_id, event_id, kafka_partition, kafka_offset FROM events"
    " WHERE customer_id IN %(customers)s AND event_id IN %(ids)s"
)
LOOKUP_CHUNK = 1000  # event ids a lookup query names
REPLAYED_SQL = (
    "SELECT customer_id, event_id, kafka_partition, kafka_offset FROM events"
    " WHERE event_id IN %(ids)s"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An event record of a batch, as the copy check sees it."""

    customer_id: str
    event_id: str
    at: str  # partition:offset
    repeat: bool = False
    replayed: bool = False

    @property
    def doubtful(self) -> bool:
        return bool(self.event_id) and (self.repeat or self.replayed)


def copies_in_batch(batch: Sequence[Candidate]) -> set[str]:
    """Positions of doubtful records whose event id an earlier record of the batch holds."""
    first: dict[str, str] = {}
    out: set[str] = set()
    for c in batch:
        if not c.event_id:
            continue
        held = first.setdefault(c.event_id, c.at)
        if held != c.at and c.doubtful:
            out.add(c.at)
    return out


def lookups(
    batch: Sequence[Candidate], skip: set[str], chunk: int = LOOKUP_CHUNK
) -> list[tuple[str, dict[str, list[str]]]]:
    """The queries (SQL, parameters) that find stored rows of the records still in doubt.

    At most ``chunk`` event ids a query: the parameters are bound into the SQL text, and
    a whole batch of ids (a worker's replay after a crash tags everything it re-sends)
    would pass ClickHouse's ``max_query_size`` (256 KiB), failing the batch every time.
    """
    repeats = sorted(
        {
            (c.event_id, c.customer_id)
            for c in batch
            if c.doubtful and not c.replayed and c.at not in skip
        }
    )
    replayed = sorted({c.event_id for c in batch if c.doubtful and c.replayed and c.at not in skip})
    out: list[tuple[str, dict[str, list[str]]]] = []
    for i in range(0, len(repeats), chunk):
        part = repeats[i : i + chunk]
        params = {
            "customers": sorted({cid for _eid, cid in part}),
            "ids": sorted({eid for eid, _cid in part}),
        }
        out.append((REPEATS_SQL, params))
    for i in range(0, len(replayed), chunk):
        out.append((REPLAYED_SQL, {"ids": replayed[i : i + chunk]}))
    return out


def copies_stored(
    batch: Sequence[Candidate], rows: Iterable[tuple[str, str, int, int]], skip: set[str]
) -> set[str]:
    """Positions of doubtful records whose event id a stored row holds at another position.

    ``rows`` are ``(customer_id, event_id, kafka_partition, kafka_offset)`` of ``events``.
    """
    by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for customer_id, event_id, partition, offset in rows:
        at = f"{partition}:{offset}"
        by_pair[(customer_id, event_id)].add(at)
        by_id[event_id].add(at)
    out: set[str] = set()
    for c in batch:
        if not c.doubtful or c.at in skip:
            continue
        held = (
            by_id.get(c.event_id, set())
            if c.replayed
            else by_pair.get((c.customer_id, c.event_id), set())
        )
        if held - {c.at}:
            out.add(c.at)
    return out
