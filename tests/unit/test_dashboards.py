"""The shipped dashboards: files up to date, every SQL panel runs on the real schema, every
PromQL panel names metrics the pipeline exports, and the compose file runs our commands."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

import pipeline.metrics  # noqa: F401  (registers the metrics)
from pipeline.cli.dashboards import ANALYTICS, HEALTH, expand_macros, stale
from pipeline.cli.main import app
from pipeline.config import REPO_ROOT
from pipeline.sinks.clickhouse.client import connect, migrate


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('dash')}")
    migrate(client)
    yield client
    client.close()


def test_committed_dashboards_match_the_generator():
    assert stale() == [], "run `crm dashboards export`"


@pytest.mark.parametrize("panel", ANALYTICS, ids=lambda p: p.title)
def test_every_clickhouse_panel_runs_on_the_schema(ch: Client, panel):
    sql = expand_macros(panel.query)
    assert "$__" not in sql
    ch.query(sql)  # raises on an unknown column, table or function


def _exported_names() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
    return names


@pytest.mark.parametrize("panel", HEALTH, ids=lambda p: p.title)
def test_every_prometheus_panel_names_exported_metrics(panel):
    used = set(re.findall(r"\bcrm_[a-z_]+", panel.query))
    # families without samples yet (no label values) still declare their names
    declared = {m.name for m in REGISTRY.collect()} | _exported_names()
    declared |= {f"{n}_total" for n in declared} | {f"{n}_bucket" for n in declared}
    assert used and used <= declared, used - declared


def test_compose_runs_commands_the_cli_has_and_mounts_what_exists():
    doc = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    commands |= {g.name for g in app.registered_groups}
    for name, service in doc["services"].items():
        command = service.get("command")
        if command and "image" not in service:
            assert command[0] in commands, (name, command)
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (REPO_ROOT / volume.split(":")[0]).exists(), volume
    prom = yaml.safe_load((REPO_ROOT / "infra/prometheus/prometheus.yml").read_text())
    assert {j["job_name"] for j in prom["scrape_configs"]} >= {"collector", "worker", "api"}


def test_grafana_provisioning_points_at_the_dashboards_folder():
    provider = yaml.safe_load(
        Path(REPO_ROOT / "infra/grafana/provisioning/dashboards/crm.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/crm"
