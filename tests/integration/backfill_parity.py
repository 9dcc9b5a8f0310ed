"""One workload through the live path, then backfills from its archive: shared by the parity tests.

``live_workload`` runs a simulated workload through the worker, the ClickHouse
sink and the archive sink and waits until every event is in Redis, in ClickHouse
and in the archive. ``backfill_env`` gives a backfill its own Redis prefix and
ClickHouse store; ``assert_same_profiles`` compares profiles on the fields that
must not depend on the path (tests/integration/profiles.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from pipeline.bench.workload import simulated_records
from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer
from tests.integration.conftest import free_port, wait_until
from tests.integration.profiles import by_identifier, comparable, event_total, stored_profiles

AGGREGATES = [
    "SELECT day, channel, campaign, sum(events), sum(conversions), sum(revenue), "
    "uniqExactMerge(visitors) FROM daily_channel_campaign "
    "GROUP BY day, channel, campaign ORDER BY day, channel, campaign",
    "SELECT day, store_id, category, uniqExactMerge(transactions), sum(units), sum(revenue) "
    "FROM daily_store_category GROUP BY day, store_id, category "
    "ORDER BY day, store_id, category",
    "SELECT day, campaign, sum(sent), sum(delivered), sum(opened), sum(clicked), sum(bounced), "
    "sum(unsubscribed), sum(complained) FROM daily_email_campaign "
    "GROUP BY day, campaign ORDER BY day, campaign",
    "SELECT count(), uniqExact(event_id), sum(revenue) FROM events",
]


def crm(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def aggregates(env: dict[str, str]) -> list[str]:
    return [crm(env, "sql", "--format", "csv", sql) for sql in AGGREGATES]


def archived(root: Path) -> int:
    return sum(
        json.loads(m.read_text())["records"] for m in root.glob("date=*/hour=*/*.manifest.json")
    )


@dataclass
class LiveRun:
    """What the live path produced: its environment, archive, event count and aggregates."""

    env: dict[str, str]
    archive: Path
    total: int
    aggregates: list[str]


def live_workload(settings: Settings, tmp_path: Path, stack: ExitStack) -> LiveRun:
    """The workload through worker, ClickHouse sink and archive sink (left running in ``stack``)."""
    records = [
        r for r in simulated_records(settings, 80, 900, seed=21) if r.topic.endswith(".events")
    ]
    total = len(records)
    env = {
        "CRM_DATA_DIR": str(tmp_path / "stream"),
        "CRM_TOPIC_PREFIX": settings.topic_prefix,
        "CRM_REDIS_PREFIX": settings.topic_prefix,
        "CRM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'stream-ch'}",
        "CRM_SQL_PORT": str(free_port()),
        "CRM_WORKER_ID": f"w{uuid.uuid4().hex[:6]}",
        "CRM_TOPIC_PARTITIONS": "3",
        "CRM_CLICKHOUSE_BATCH_MS": "200",
    }
    archive = tmp_path / "stream" / "archive"
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    producer.send_sync(records, timeout=60)
    producer.close()
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    stack.enter_context(crm_process(["worker"], None, logs / "worker.log", env=env))
    stack.enter_context(crm_process(["sink", "clickhouse"], None, logs / "ch.log", env=env))
    stack.enter_context(
        crm_process(["sink", "archive", "--max-wait", "0.5"], None, logs / "archive.log", env=env)
    )
    wait_until(
        lambda: (
            ((n := event_total(settings, settings.topic_prefix)) == total and (True, n))
            or (False, n)
        ),
        240,
        "every event in a Redis profile",
    )
    wait_until(lambda: ((n := archived(archive)) == total, n), 120, "every event archived")
    wait_until(
        lambda: (
            (n := crm(env, "sql", "--format", "csv", "SELECT count() FROM events")).splitlines()[-1]
            == str(total),
            n,
        ),
        120,
        "every event in ClickHouse",
    )
    time.sleep(1)
    return LiveRun(env, archive, total, aggregates(env))


def backfill_env(live: LiveRun, tmp_path: Path, name: str) -> tuple[dict[str, str], str]:
    """An environment for a backfill into its own Redis prefix and ClickHouse store."""
    prefix = f"{name}{uuid.uuid4().hex[:6]}:"
    env = {
        **live.env,
        "CRM_REDIS_PREFIX": prefix,
        "CRM_CLICKHOUSE_URL": f"chdb://{tmp_path / f'{name}-ch'}",
        "CRM_SQL_PORT": str(free_port()),
    }
    return env, prefix


def assert_same_profiles(settings: Settings, expected_prefix: str, got_prefix: str) -> None:
    """Every profile under ``expected_prefix`` has its equal under ``got_prefix``."""
    expected = stored_profiles(settings, expected_prefix)
    got = stored_profiles(settings, got_prefix)
    assert len(got) == len(expected)
    owner = by_identifier(got)
    for p in expected.values():
        kind, values = next(iter(sorted(p.identifiers.items())))
        assert comparable(got[owner[(kind, values[0])]]) == comparable(p)
