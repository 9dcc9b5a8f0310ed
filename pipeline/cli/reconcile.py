"""``crm reconcile``: was every acknowledged event stored once, and only once?

Reads the events topic from its beginning (every event the collector acknowledged),
ClickHouse's ``events`` and ``failed_events``, the live profiles in Redis and the
consumer groups' lag, and prints per source what is stored, dead-lettered, duplicated,
in flight or lost (``pipeline/transforms/reconciliation.py`` decides). Exits 1 when an
event is lost or duplicated, or the profiles' event total disagrees with ClickHouse.
Memory grows with the number of distinct event ids (about 100 bytes each).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings, get_settings
from pipeline.transforms.reconciliation import Reconciliation, reconcile

console = Console()


class _Acknowledged(msgspec.Struct, rename="camel"):
    message_id: str | None = None
    source: str | None = None


class _Counted(msgspec.Struct):
    events: int = 0


def acknowledged(settings: Settings) -> list[tuple[str, str]]:
    """(source, event id) of every record on the events topic."""
    from pipeline.kafka.inspect import read_range

    decoder = msgspec.json.Decoder(_Acknowledged)
    out: list[tuple[str, str]] = []
    for msg in read_range(settings, settings.topic("events"), timeout=300.0):
        try:
            ack = decoder.decode(msg.value() or b"{}")
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # the collector writes only valid events here
        if ack.message_id:
            out.append((ack.source or "unknown", ack.message_id))
    return out


def stored_rows(settings: Settings) -> tuple[dict[str, int], set[str]]:
    """Rows per event id in ``events``; event ids with a ``failed_events`` row."""
    from pipeline.sinks.clickhouse.access import query

    rows = query(settings, "SELECT event_id, count() FROM events GROUP BY event_id")["rows"]
    failed = query(settings, "SELECT DISTINCT event_id FROM failed_events WHERE event_id != ''")
    return {r[0]: int(r[1]) for r in rows}, {r[0] for r in failed["rows"]}


def profile_event_total(settings: Settings) -> int:
    from pipeline.stores.redis_client import sync_redis
    from pipeline.wire.keys import RedisKeys

    client = sync_redis(settings)
    decoder = msgspec.json.Decoder(_Counted)
    total = 0
    for key in client.scan_iter(RedisKeys(settings.redis_prefix).profiles(), count=1000):
        raw = client.hget(key, "json")
        if raw:  # tombstones of absorbed or forgotten customers carry no content
            total += decoder.decode(raw).events
    return total


def pipeline_lag(settings: Settings) -> int:
    """Records the worker and the ClickHouse sink have not committed yet."""
    from pipeline.kafka.inspect import group_lag
    from pipeline.sinks.clickhouse.runner import consumer_group, source_topics

    worker = [settings.topic("events"), settings.topic("events.by_customer")]
    return group_lag(settings, settings.worker_id, worker) + group_lag(
        settings, consumer_group(settings), source_topics(settings)
    )


def run_reconcile(settings: Settings, wait_s: float = 0.0, profiles: bool = True) -> Reconciliation:
    """Reconcile now, after waiting up to ``wait_s`` for the consumers to catch up."""
    deadline = time.monotonic() + wait_s
    lag = pipeline_lag(settings)
    while lag > 0 and time.monotonic() < deadline:
        time.sleep(1.0)
        lag = pipeline_lag(settings)
    acked = acknowledged(settings)
    stored, failed = stored_rows(settings)
    total = profile_event_total(settings) if profiles else None
    return reconcile(acked, stored, failed, lag, total)


def render(result: Reconciliation) -> Table:
    table = Table(title=f"Reconciliation (consumer lag {result.lag:,})")
    columns = ("acknowledged", "stored", "dead_lettered", "duplicated", "in_flight", "lost")
    table.add_column("source")
    for name in columns:
        table.add_column(name.replace("_", " "), justify="right")
    for ledger in [*result.sources, result.total]:
        values = [getattr(ledger, name) for name in columns]
        style = "red" if ledger.lost or ledger.duplicated else None
        table.add_row(ledger.source, *(f"{v:,}" for v in values), style=style)
    return table


def as_dict(result: Reconciliation) -> dict[str, Any]:
    return {
        "sources": [asdict(s) for s in result.sources],
        "total": asdict(result.total),
        "lag": result.lag,
        "unacknowledged_rows": result.unacknowledged_rows,
        "profile_events": result.profile_events,
        "stored_ids": result.stored_ids,
        "clean": result.clean,
    }


def reconcile_cmd(
    wait: float = typer.Option(0.0, help="Seconds to wait for the consumers to catch up first"),
    profiles: bool = typer.Option(True, help="Also compare the profiles' event total (Redis)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Compare what the collector acknowledged with ClickHouse and the profiles."""
    result = run_reconcile(get_settings(), wait, profiles)
    if as_json:
        print(json.dumps(as_dict(result), indent=2))
    else:
        console.print(render(result))
        for ledger in result.sources:
            if ledger.lost_examples:
                console.print(f"lost from {ledger.source}: {', '.join(ledger.lost_examples)}")
        if result.unacknowledged_rows:
            console.print(f"{result.unacknowledged_rows:,} events rows of ids not on the topic")
        if result.profile_events is not None:
            console.print(
                f"profiles count {result.profile_events:,} events; "
                f"ClickHouse holds {result.stored_ids:,} distinct acknowledged events"
            )
    raise typer.Exit(0 if result.clean else 1)
