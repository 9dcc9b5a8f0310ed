"""Rich tables for the simulator's results and for what landed in Kafka."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import msgspec
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings
from pipeline.events import CHANNEL_BY_TYPE
from pipeline.kafka.inspect import read_range
from pipeline.sources.simulator import SimStats
from pipeline.wire.dead_letter import from_headers


class _TypeOnly(msgspec.Struct):
    type: str


@dataclass
class TopicSummary:
    accepted: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def total_accepted(self) -> int:
        return sum(self.accepted.values())

    @property
    def total_dead(self) -> int:
        return sum(self.dead.values())


def summarise_topics(
    settings: Settings,
    events_start: dict[int, int] | None = None,
    dlq_start: dict[int, int] | None = None,
) -> TopicSummary:
    """Count what is in ``events`` and ``events.dlq`` since the given offsets."""
    out = TopicSummary()
    decoder = msgspec.json.Decoder(_TypeOnly)
    for msg in read_range(settings, settings.topic("events"), events_start):
        kind = decoder.decode(msg.value() or b"{}").type
        out.accepted[(CHANNEL_BY_TYPE.get(kind, "?"), kind)] += 1
    for msg in read_range(settings, settings.topic("events.dlq"), dlq_start):
        letter = from_headers(msg.value() or b"", msg.headers())
        out.dead[(letter.error_type, letter.reason[:90])] += 1
    return out


def print_topic_summary(
    summary: TopicSummary, console: Console, seconds: float | None = None
) -> None:
    table = Table(title="Accepted events in Kafka (topic events)")
    table.add_column("channel")
    table.add_column("type")
    table.add_column("events", justify="right")
    for (channel, kind), n in sorted(summary.accepted.items()):
        table.add_row(channel, kind, f"{n:,}")
    table.add_row("[bold]total", "", f"[bold]{summary.total_accepted:,}")
    console.print(table)
    dead = Table(title="Dead-lettered (topic events.dlq)")
    dead.add_column("error type")
    dead.add_column("reason")
    dead.add_column("events", justify="right")
    for (etype, reason), n in summary.dead.most_common(10):
        dead.add_row(etype, reason, f"{n:,}")
    dead.add_row("[bold]total", "", f"[bold]{summary.total_dead:,}")
    console.print(dead)
    if seconds:
        rate = (summary.total_accepted + summary.total_dead) / seconds
        console.print(f"throughput: {rate:,.0f} events/s over {seconds:.1f}s")


def print_sim_stats(stats: SimStats, console: Console) -> None:
    table = Table(title="Simulator")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("events sent", f"{stats.sent:,}")
    table.add_row("accepted", f"{stats.accepted:,}")
    table.add_row("rejected", f"{stats.rejected:,}")
    table.add_row("failed requests", f"{stats.failed_requests:,}")
    table.add_row("rate", f"{stats.rate:,.0f} events/s")
    for kind, n in stats.by_type.most_common():
        table.add_row(f"  {kind}", f"{n:,}")
    console.print(table)
