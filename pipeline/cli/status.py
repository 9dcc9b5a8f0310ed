"""``crm status``: is everything up, and how much is in it.

Each check yields :class:`Check` rows; the table and ``--json`` render the same rows,
and the command exits non-zero when a required service (Kafka, Redis, ClickHouse) is
down, so scripts and health checks can use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings
from pipeline.kafka.topics import TOPICS


@dataclass(frozen=True)
class Check:
    component: str
    state: str  # up, down, missing, not running, invalid, learning, ...
    detail: str
    healthy: bool | None = None  # False: a required service is down; None: information


COLOURS = {"up": "green", "defined": "green", "learning": "green", "down": "red"}
COLOURS |= {"invalid": "red", "drift": "red", "missing": "yellow"}


def _kafka(settings: Settings) -> Iterator[Check]:
    from pipeline.kafka.inspect import end_offsets
    from pipeline.kafka.topics import admin

    try:
        meta = admin(settings, quiet=True).list_topics(timeout=3)
    except Exception as exc:
        yield Check("kafka", "down", f"{settings.kafka_bootstrap}: {exc}", False)
        return
    brokers = f"{settings.kafka_bootstrap}, {len(meta.brokers)} broker(s)"
    yield Check("kafka", "up", brokers, True)
    for spec in TOPICS:
        name = settings.topic(spec.logical)
        if name not in meta.topics:
            yield Check(f"  {name}", "missing", "run `crm up`", False)
            continue
        offsets = end_offsets(settings, name)
        yield Check(f"  {name}", f"{len(offsets)} partitions", f"{sum(offsets.values()):,} records")


def _redis(settings: Settings) -> Iterator[Check]:
    from pipeline.stores.redis_client import sync_redis

    try:
        client = sync_redis(settings, socket_timeout=2)
        info = client.info()
        detail = (
            f"{settings.redis_url}, {client.dbsize():,} keys, "
            f"{info.get('used_memory_human')} used, aof={info.get('aof_enabled')}"
        )
        yield Check("redis", "up", detail, True)
    except redis.RedisError as exc:
        yield Check("redis", "down", f"{settings.redis_url}: {exc}", False)


def _clickhouse(settings: Settings) -> Iterator[Check]:
    from pipeline.sinks.clickhouse.access import query

    try:  # through the sink when it owns the embedded store, else directly
        version = query(settings, "SELECT version()")["rows"][0][0]
    except Exception as exc:
        yield Check("clickhouse", "down", f"{settings.clickhouse_dsn}: {exc}"[:200], False)
        return
    yield Check("clickhouse", "up", f"{settings.clickhouse_dsn} (ClickHouse {version})", True)


def _collector(settings: Settings) -> Iterator[Check]:
    url = f"http://{settings.collector_host}:{settings.collector_port}/health"
    try:
        httpx.get(url, timeout=1).raise_for_status()
        yield Check("collector", "up", url)
    except httpx.HTTPError:
        yield Check("collector", "not running", url)


def _models(settings: Settings) -> Iterator[Check]:
    from pipeline.models.checkpoint import summaries

    found = summaries(settings.data_dir / "models")
    if not found:
        yield Check("models", "no checkpoint", "a worker checkpoints every minute")
    for doc in found:
        churn = doc.get("churn", {})
        clv = "fitted" if doc.get("clv") else "not fitted yet"
        yield Check(
            f"models {Path(doc['checkpoint']).parent.name}/{Path(doc['checkpoint']).stem}",
            "drift" if churn.get("drift_alarms") else "learning",
            f"churn labels {churn.get('labels_learned', 0):,}, rolling AUC "
            f"{churn.get('rolling_auc', 0):.3f}, log loss {churn.get('log_loss', 0):.3f}, "
            f"drift alarms {churn.get('drift_alarms', 0)}; lifetime value {clv}; "
            f"checkpoint {doc.get('written_at', '?')[:19]}",
        )


def _segments(settings: Settings) -> Iterator[Check]:
    from pipeline.rule_files import load_segments
    from pipeline.stores.redis_client import sync_redis
    from pipeline.stores.segments_redis import SegmentReader
    from pipeline.transforms.conditions import ConfigError

    try:
        config = load_segments(settings.segments_rules)
    except ConfigError as exc:
        yield Check("segments", "invalid", str(exc)[:200], False)
        return
    try:
        reader = SegmentReader(sync_redis(settings, socket_timeout=2), settings.redis_prefix)
        counts = ", ".join(f"{s.name} {reader.count(s.name):,}" for s in config.segments)
        timers = reader.pending_timers()
    except redis.RedisError:
        yield Check("segments", "redis down", f"{len(config.segments)} defined")
        return
    yield Check("segments", "defined", f"{counts}; {timers:,} pending timers")


CHECKS: list[Callable[[Settings], Iterator[Check]]] = [
    _kafka,
    _redis,
    _clickhouse,
    _collector,
    _models,
    _segments,
]


def collect(settings: Settings) -> list[Check]:
    return [row for check in CHECKS for row in check(settings)]


def render_status(settings: Settings, console: Console, as_json: bool = False) -> bool:
    """Print the overview; True when every required service is up."""
    rows = collect(settings)
    ok = all(r.healthy is not False for r in rows)
    if as_json:
        components = [{**asdict(r), "component": r.component.strip()} for r in rows]
        print(json.dumps({"ok": ok, "components": components}, indent=2))
        return ok
    table = Table(title="crm status")
    for column in ("component", "state", "detail"):
        table.add_column(column)
    for r in rows:
        colour = COLOURS.get(r.state, "dim" if r.healthy is None else "")
        table.add_row(r.component, f"[{colour}]{r.state}" if colour else r.state, r.detail)
    console.print(table)
    return ok
