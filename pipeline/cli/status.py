"""``crm status``: is everything up, and how much is in it."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings
from pipeline.kafka.topics import TOPICS


def _kafka(settings: Settings, table: Table) -> None:
    from pipeline.kafka.inspect import end_offsets
    from pipeline.kafka.topics import admin

    try:
        meta = admin(settings, quiet=True).list_topics(timeout=3)
    except Exception as exc:
        table.add_row("kafka", "[red]down", f"{settings.kafka_bootstrap}: {exc}")
        return
    table.add_row(
        "kafka", "[green]up", f"{settings.kafka_bootstrap}, {len(meta.brokers)} broker(s)"
    )
    for spec in TOPICS:
        name = settings.topic(spec.logical)
        if name not in meta.topics:
            table.add_row(f"  {name}", "[yellow]missing", "run `crm up`")
            continue
        offsets = end_offsets(settings, name)
        table.add_row(
            f"  {name}", f"{len(offsets)} partitions", f"{sum(offsets.values()):,} records"
        )


def _redis(settings: Settings, table: Table) -> None:
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
        info = client.info()
        table.add_row(
            "redis",
            "[green]up",
            f"{settings.redis_url}, {client.dbsize():,} keys, "
            f"{info.get('used_memory_human')} used, aof={info.get('aof_enabled')}",
        )
    except redis.RedisError as exc:
        table.add_row("redis", "[red]down", f"{settings.redis_url}: {exc}")


def _clickhouse(settings: Settings, table: Table) -> None:
    try:
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
        version = client.command("SELECT version()")
        table.add_row(
            "clickhouse", "[green]up", f"{settings.clickhouse_dsn} (ClickHouse {version})"
        )
        client.close()
    except Exception as exc:
        table.add_row("clickhouse", "[red]unavailable", f"{settings.clickhouse_dsn}: {exc}"[:200])


def _collector(settings: Settings, table: Table) -> None:
    url = f"http://{settings.collector_host}:{settings.collector_port}/health"
    try:
        httpx.get(url, timeout=1).raise_for_status()
        table.add_row("collector", "[green]up", url)
    except httpx.HTTPError:
        table.add_row("collector", "[dim]not running", url)


def _models(settings: Settings, table: Table) -> None:
    from pipeline.models.checkpoint import summaries

    found = summaries(settings.data_dir / "models")
    if not found:
        table.add_row("models", "[dim]no checkpoint", "a worker checkpoints every minute")
    for doc in found:
        churn = doc.get("churn", {})
        clv = "fitted" if doc.get("clv") else "not fitted yet"
        table.add_row(
            f"models {Path(doc['checkpoint']).parent.name}/{Path(doc['checkpoint']).stem}",
            "[red]drift" if churn.get("drift_alarms") else "[green]learning",
            f"churn labels {churn.get('labels_learned', 0):,}, rolling AUC "
            f"{churn.get('rolling_auc', 0):.3f}, log loss {churn.get('log_loss', 0):.3f}, "
            f"drift alarms {churn.get('drift_alarms', 0)}; lifetime value {clv}; "
            f"checkpoint {doc.get('written_at', '?')[:19]}",
        )


def _segments(settings: Settings, table: Table) -> None:
    from pipeline.rule_files import load_segments
    from pipeline.stores.segments_redis import SegmentReader
    from pipeline.transforms.conditions import ConfigError

    try:
        config = load_segments(settings.segments_rules)
    except ConfigError as exc:
        table.add_row("segments", "[red]invalid", str(exc)[:200])
        return
    try:
        reader = SegmentReader(
            redis.Redis.from_url(settings.redis_url, socket_timeout=2), settings.redis_prefix
        )
        counts = ", ".join(f"{s.name} {reader.count(s.name):,}" for s in config.segments)
        timers = reader.pending_timers()
    except redis.RedisError:
        table.add_row("segments", "[dim]redis down", f"{len(config.segments)} defined")
        return
    table.add_row("segments", "[green]defined", f"{counts}; {timers:,} pending timers")


def render_status(settings: Settings, console: Console) -> None:
    table = Table(title="crm status")
    table.add_column("component")
    table.add_column("state")
    table.add_column("detail")
    _kafka(settings, table)
    _redis(settings, table)
    _clickhouse(settings, table)
    _collector(settings, table)
    _models(settings, table)
    _segments(settings, table)
    console.print(table)
