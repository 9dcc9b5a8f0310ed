"""ClickHouse: migrations, reconciliation with the collector, sink crash idempotence."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

from pipeline.bench.workload import simulated_records
from pipeline.cli.processes import crm_process, http_service
from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer
from pipeline.sinks.clickhouse.access import query as open_query
from pipeline.sinks.clickhouse.client import QUERIES
from pipeline.sources.simulator import Simulator
from tests.integration.conftest import free_port, wait_until


def scalar(s: Settings, sql: str) -> Any:
    return query(s, sql)["rows"][0][0]


def test_migrations_apply_twice(ch_settings):
    _s, env = ch_settings
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", "migrate"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
    assert "up to date" in out.stdout


def test_reconciliation_accepted_equals_rows_and_aggregates_match_events(ch_settings, tmp_path):
    s, env = ch_settings
    cport = free_port()
    with ExitStack() as stack:
        stack.enter_context(
            crm_process(["worker", "--name", "a"], None, tmp_path / "worker.log", env=env)
        )
        stack.enter_context(
            crm_process(["sink", "clickhouse"], None, tmp_path / "sink.log", env=env)
        )
        stack.enter_context(http_service("collector", cport, tmp_path / "collector.log", env))
        sim = Simulator(
            f"http://127.0.0.1:{cport}", "it-write-key", customers=80, seed=5, invalid_share=0.03
        )
        stats = asyncio.run(sim.run(rate=400, duration=8))
        assert stats.failed_requests == 0 and stats.accepted > 2000 and stats.rejected > 0

        def counts() -> tuple[bool, Any]:
            try:
                got = (
                    scalar(s, "SELECT count() FROM events FINAL"),
                    scalar(s, "SELECT count() FROM failed_events"),
                )
            except Exception as exc:
                return False, str(exc)
            return got == (stats.accepted, stats.rejected), got

        wait_until(counts, 180, f"events={stats.accepted}, failed={stats.rejected}")
        assert (
            scalar(s, "SELECT count() FROM events") == stats.accepted
        )  # no duplicates even before merges
        assert scalar(s, "SELECT uniqExact(event_id) FROM events") == stats.accepted
        groups = query(
            s,
            "SELECT count(), countIf(name LIKE 'acct-%' AND JSONExtractString(properties, 'plan')"
            " IN ('family', 'business')) FROM events FINAL WHERE type = 'group'",
        )["rows"][0]
        assert stats.by_type["group"] > 0 and list(groups) == [stats.by_type["group"]] * 2
        reasons = {r[0] for r in query(s, "SELECT DISTINCT error_type FROM failed_events")["rows"]}
        assert reasons <= {"schema", "rule"} and reasons

        by_channel = query(
            s,
            """
            SELECT day, channel, campaign, sum(events), sum(conversions), sum(revenue), uniqExactMerge(customers)
            FROM daily_channel_campaign GROUP BY day, channel, campaign ORDER BY day, channel, campaign""",
        )["rows"]
        recomputed = query(
            s,
            """
            SELECT toDate(event_time) AS day, channel, campaign, count(),
                   countIf(type = 'pos_transaction' OR name = 'Order Completed'), sum(revenue), uniqExact(customer_id)
            FROM events FINAL GROUP BY day, channel, campaign ORDER BY day, channel, campaign""",
        )["rows"]
        assert by_channel == recomputed

        email = query(
            s,
            """SELECT campaign, sum(sent), sum(opened), sum(clicked), uniqExactIfMerge(unique_opened)
                            FROM daily_email_campaign GROUP BY campaign ORDER BY campaign""",
        )["rows"]
        email_re = query(
            s,
            """SELECT campaign, countIf(name='sent'), countIf(name='open'), countIf(name='click'),
                                      uniqExactIf(customer_id, name='open')
                               FROM events FINAL WHERE type='email' GROUP BY campaign ORDER BY campaign""",
        )["rows"]
        assert email == email_re

        stores = query(
            s,
            """SELECT store_id, category, sum(units), sum(revenue) FROM daily_store_category
                             GROUP BY store_id, category ORDER BY store_id, category""",
        )["rows"]
        stores_re = query(
            s,
            """
            SELECT if(store_id = '', 'web', store_id) AS st, if(items.category = '', '(none)', items.category) AS c,
                   sum(items.quantity), sum(items.price * items.quantity)
            FROM events FINAL ARRAY JOIN items WHERE type = 'pos_transaction' OR name = 'Order Completed'
            GROUP BY st, c ORDER BY st, c""",
        )["rows"]
        assert stores == stores_re

        def snapshots() -> tuple[bool, Any]:
            n = scalar(s, "SELECT sum(events) FROM profile_snapshots FINAL WHERE merged_into = ''")
            return n == stats.accepted, n

        wait_until(snapshots, 60, "profile snapshots covering every event")
        for path in sorted(QUERIES.glob("*.sql")):  # every dashboard query runs on this data
            assert query(s, path.read_text())["columns"], path.name


def test_sink_killed_mid_batch_loses_and_duplicates_nothing(ch_settings, tmp_path):
    s, env = ch_settings
    env = {**env, "CRM_CLICKHOUSE_BATCH": "100", "CRM_CLICKHOUSE_BATCH_MS": "50"}
    with crm_process(["worker", "--name", "a"], None, tmp_path / "worker.log", env=env):
        records = simulated_records(s, customers=60, touches=1200)
        producer = ConfirmedProducer(s.kafka_bootstrap, ack_timeout_ms=30_000)
        producer.send_sync(records, timeout=120)
        producer.close()
        for attempt in range(3):  # kill it twice while it works through the backlog
            with crm_process(
                ["sink", "clickhouse"], None, tmp_path / f"sink{attempt}.log", env=env
            ) as proc:
                if attempt < 2:
                    time.sleep(4 + attempt)
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    continue

                def done() -> tuple[bool, Any]:
                    try:
                        n = scalar(s, "SELECT count() FROM events")
                    except Exception as exc:
                        return False, str(exc)
                    return n == len(records), n

                wait_until(done, 180, f"{len(records)} events")
                time.sleep(2)
                assert scalar(s, "SELECT count() FROM events") == len(records)
                assert scalar(s, "SELECT uniqExact(event_id) FROM events") == len(records)
                assert scalar(s, "SELECT sum(events) FROM daily_channel_campaign") == len(records)


def query(s: Settings, sql: str) -> dict[str, Any]:
    """Through the running sink only: the test process must never take the store's lock."""
    return open_query(s, sql, open_store=False)
