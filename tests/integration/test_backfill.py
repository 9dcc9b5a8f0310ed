"""Backfill parity and idempotence: the Beam pipeline over the archive agrees with the stream.

One workload goes through the live path (worker, ClickHouse sink, archive sink);
then ``crm backfill`` rebuilds profiles into another Redis prefix and events
into another ClickHouse store from the archive. Profiles (order-independent
fields, see tests/integration/profiles.py) and the daily aggregates must be
equal; a second backfill must change nothing. Finally ``crm replay`` re-publishes
the archive into the live pipeline and nothing is counted twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from pipeline.bench.workload import simulated_records
from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.kafka.inspect import end_offsets, group_lag
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


def test_backfill_equals_stream_is_idempotent_and_replay_adds_nothing(
    settings: Settings, tmp_path: Path
):
    records = [
        r for r in simulated_records(settings, 80, 900, seed=21) if r.topic.endswith(".events")
    ]
    total = len(records)
    stream_env = {
        "CRM_DATA_DIR": str(tmp_path / "stream"),
        "CRM_TOPIC_PREFIX": settings.topic_prefix,
        "CRM_REDIS_PREFIX": settings.topic_prefix,
        "CRM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'stream-ch'}",
        "CRM_SQL_PORT": str(free_port()),
        "CRM_WORKER_ID": f"w{uuid.uuid4().hex[:6]}",
        "CRM_TOPIC_PARTITIONS": "3",
        "CRM_WORKER_BATCH_MS": "20",
        "CRM_CLICKHOUSE_BATCH_MS": "200",
    }
    backfill_prefix = f"bf{uuid.uuid4().hex[:6]}:"
    backfill_env = {
        **stream_env,
        "CRM_REDIS_PREFIX": backfill_prefix,
        "CRM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'backfill-ch'}",
        "CRM_SQL_PORT": str(free_port()),
    }
    archive = tmp_path / "stream" / "archive"
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    producer.send_sync(records, timeout=60)
    producer.close()
    logs = tmp_path / "logs"
    logs.mkdir()
    with ExitStack() as stack:
        stack.enter_context(crm_process(["worker"], None, logs / "worker.log", env=stream_env))
        stack.enter_context(
            crm_process(["sink", "clickhouse"], None, logs / "ch.log", env=stream_env)
        )
        stack.enter_context(
            crm_process(
                ["sink", "archive", "--max-wait", "0.5"], None, logs / "archive.log", env=stream_env
            )
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
                (
                    n := crm(stream_env, "sql", "--format", "csv", "SELECT count() FROM events")
                ).splitlines()[-1]
                == str(total),
                n,
            ),
            120,
            "every event in ClickHouse",
        )
        time.sleep(1)
        stream_aggregates = aggregates(stream_env)

        # --- backfill into fresh stores, twice --------------------------------------
        first = json.loads(crm(backfill_env, "backfill", "--archive", str(archive), "--json"))
        assert first["events_read"] == total
        assert first["clickhouse_rows_inserted"] == total
        backfill_aggregates = aggregates(backfill_env)
        assert backfill_aggregates == stream_aggregates

        streamed = stored_profiles(settings, settings.topic_prefix)
        rebuilt = stored_profiles(settings, backfill_prefix)
        assert len(rebuilt) == len(streamed)
        owner = by_identifier(rebuilt)
        for p in streamed.values():
            kind, values = next(iter(sorted(p.identifiers.items())))
            assert comparable(rebuilt[owner[(kind, values[0])]]) == comparable(p)

        second = json.loads(crm(backfill_env, "backfill", "--archive", str(archive), "--json"))
        assert second.get("clickhouse_rows_inserted", 0) == 0
        assert second["clickhouse_rows_already_present"] == total
        assert second.get("redis_profiles_written", 0) == 0
        assert aggregates(backfill_env) == backfill_aggregates
        assert {
            c: comparable(p) for c, p in stored_profiles(settings, backfill_prefix).items()
        } == {c: comparable(p) for c, p in rebuilt.items()}

        # --- replay the archive into the live pipeline: nothing counted twice --------
        routed_topic = settings.topic("events.by_customer")
        routed_before = sum(end_offsets(settings, routed_topic).values())
        crm(stream_env, "replay", "--archive", str(archive), "--rate", "20000")
        wait_until(
            lambda: (
                (n := sum(end_offsets(settings, routed_topic).values()) - routed_before) >= total,
                n,
            ),
            120,
            "every replayed event routed by the identity stage",
        )
        sink_group = f"{settings.topic_prefix}crm-clickhouse"
        wait_until(
            lambda: ((n := group_lag(settings, sink_group, [routed_topic])) == 0, n),
            120,
            "ClickHouse sink caught up with the replay",
        )
        assert aggregates(stream_env) == stream_aggregates
        assert event_total(settings, settings.topic_prefix) == total
        assert archived(archive) == total
