"""The migrations for a ClickHouse cluster, checked as text and by ClickHouse's parser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse.client import MIGRATIONS, connect
from pipeline.sinks.clickhouse.cluster_ddl import cluster_statements


def all_statements(cluster: str = "crm") -> list[str]:
    seen: set[str] = set()
    return [
        s
        for path in sorted(MIGRATIONS.glob("*.sql"))
        for s in cluster_statements(path.read_text(), cluster, seen)
    ]


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('ddl')}")
    yield client
    client.close()


def test_every_table_becomes_replicated_local_plus_distributed():
    stmts = all_statements()
    creates = [s for s in stmts if s.startswith("CREATE TABLE")]
    local = [s for s in creates if "_local ON CLUSTER 'crm'\n" in s]
    distributed = [s for s in creates if "ENGINE = Distributed('crm'" in s]
    assert len(local) == len(distributed) >= 8
    for s in local:
        assert "ENGINE = Replicated" in s and "'{replica}'" in s and "{shard}" in s
        assert "non_replicated_deduplication_window" not in s
        assert "replicated_deduplication_window" in s
    events = next(s for s in local if s.startswith("CREATE TABLE IF NOT EXISTS events_local"))
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local', "
    assert "'{replica}', received_at)" in events
    assert any("'events_local', cityHash64(customer_id))" in s for s in distributed)


def test_materialized_views_aggregate_per_shard_and_views_join_globally():
    stmts = all_statements()
    mvs = [s for s in stmts if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(mvs) == 3
    assert all(" TO daily_" in s and "_local AS" in s and "FROM events_local" in s for s in mvs)
    resolved = next(s for s in stmts if "VIEW IF NOT EXISTS events_resolved" in s)
    assert "GLOBAL LEFT JOIN" in resolved and "FROM events AS e" in resolved
    alters = [s for s in stmts if s.startswith("ALTER TABLE profile_snapshots")]
    assert {a.split()[2] for a in alters} == {"profile_snapshots_local", "profile_snapshots"}


def test_clickhouse_parses_every_statement(parser: Client):
    for stmt in all_statements():
        quoted = stmt.replace("\\", "\\\\").replace("'", "\\'")
        formatted = parser.query(f"SELECT formatQuery('{quoted}')").result_rows[0][0]
        assert "ON CLUSTER crm" in formatted, formatted[:200]
