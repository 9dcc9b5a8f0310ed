"""``crm segments list|show|members`` and ``crm rules check``: what marketers defined, who is in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import get_settings
from pipeline.rule_files import load_loyalty, load_personalization, load_segments
from pipeline.stores.redis_client import sync_redis
from pipeline.stores.segments_redis import SegmentReader
from pipeline.transforms.conditions import ConfigError
from pipeline.transforms.segments import SegmentConfig

console = Console()
segments_app = typer.Typer(help="Live segments: definitions and members")
rules_app = typer.Typer(help="Rule files: segments, loyalty, personalization")


def _config() -> SegmentConfig:
    try:
        return load_segments(get_settings().segments_rules)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _reader() -> SegmentReader:
    s = get_settings()
    return SegmentReader(sync_redis(s), s.redis_prefix)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


@segments_app.command("list")
def list_segments(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every defined segment with its live member count."""
    config, reader = _config(), _reader()
    rows: list[dict[str, Any]] = [
        {
            "segment": seg.name,
            "members": reader.count(seg.name),
            "consent": list(seg.consent),
            "description": seg.description,
        }
        for seg in config.segments
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"segments ({get_settings().segments_rules.name}, {config.digest})")
    for col in ("segment", "members", "needs consent", "description"):
        table.add_column(col, justify="right" if col == "members" else "left")
    for r in rows:
        table.add_row(r["segment"], f"{r['members']:,}", ", ".join(r["consent"]), r["description"])
    console.print(table)
    console.print(
        f"pending timers: {reader.pending_timers():,}; event-time clock: "
        f"{_iso(reader.clock()) if reader.clock() else 'not started'}"
    )


@segments_app.command("show")
def show(name: str) -> None:
    """A segment's definition (as written in the file) and member count."""
    seg = _config().get(name)
    if seg is None:
        console.print(f"[red]no segment {name!r}[/red]; see crm segments list")
        raise typer.Exit(1)
    console.print(f"[bold]{seg.name}[/bold]: {seg.description}")
    console.print(
        f"members: {_reader().count(name):,}; needs consent: {', '.join(seg.consent) or '-'}"
    )
    console.print(f"condition: {seg.condition}")


@segments_app.command("members")
def members(
    name: str,
    limit: int = typer.Option(50, min=1, max=100_000),
    offset: int = typer.Option(0, min=0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Customer ids in a segment, oldest entry first."""
    if _config().get(name) is None:
        console.print(f"[red]no segment {name!r}[/red]; see crm segments list")
        raise typer.Exit(1)
    rows = _reader().members(name, limit, offset)
    if as_json:
        typer.echo(json.dumps([{"customer_id": c, "since": _iso(t)} for c, t in rows]))
        return
    table = Table(title=f"{name}: {_reader().count(name):,} members")
    table.add_column("customer_id")
    table.add_column("in since (event time)")
    for cid, t in rows:
        table.add_row(cid, _iso(t))
    console.print(table)


@rules_app.command("check")
def check() -> None:
    """Validate every rule file; exit 2 with the file and line of the first error."""
    s = get_settings()
    loaders = (
        (s.segments_rules, load_segments),
        (s.loyalty_rules, load_loyalty),
        (s.personalization_rules, load_personalization),
    )
    failed = False
    for path, load in loaders:
        try:
            load(path)
            console.print(f"[green]ok[/green] {path}")
        except ConfigError as exc:
            failed = True
            console.print(f"[red]invalid[/red] {exc}")
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.add_typer(segments_app, name="segments")
    app.add_typer(rules_app, name="rules")
