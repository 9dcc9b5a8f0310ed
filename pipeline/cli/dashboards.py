"""Grafana dashboards as files: ``crm dashboards export`` writes them, ``--check`` compares.

Two dashboards, provisioned from ``infra/grafana/`` (see docker-compose.yml):

* **CRM analytics** (ClickHouse data source, the grafana-clickhouse-datasource plugin):
  traffic and conversion, the email funnel, revenue by store and category, segments over
  time, failed events;
* **CRM pipeline health** (Prometheus): throughput in and out, dead letters, consumer lag,
  sink flush latency, collector latency, retries.

Panels are generated here so the SQL is one list that a unit test runs against the
real schema (the embedded engine, migrations applied), with Grafana's macros expanded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT

GRAFANA_DIR = REPO_ROOT / "infra" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}


@dataclass(frozen=True)
class Panel:
    title: str
    query: str  # SQL (ClickHouse) or PromQL, one per panel
    kind: str = "timeseries"  # timeseries | table | barchart | stat
    unit: str = ""
    legend: str = ""  # PromQL legend format


ANALYTICS = [
    Panel(
        "Events by channel",
        "SELECT $__timeInterval(event_time) AS time, channel, count() AS events\n"
        "FROM events WHERE $__timeFilter(event_time)\n"
        "GROUP BY time, channel ORDER BY time",
    ),
    Panel(
        "Conversion: visitors, viewers, buyers per day",
        "SELECT toStartOfDay(event_time) AS time,\n"
        "  uniqExact(customer_id) AS visitors,\n"
        "  uniqExactIf(customer_id, name = 'Product Viewed') AS viewers,\n"
        "  uniqExactIf(customer_id, type = 'pos_transaction' OR name = 'Order Completed')"
        " AS buyers\n"
        "FROM events WHERE $__timeFilter(event_time) GROUP BY time ORDER BY time",
    ),
    Panel(
        "Traffic by campaign",
        "SELECT campaign, sum(events) AS events, sum(conversions) AS conversions,\n"
        "  sum(revenue) AS revenue, uniqExactMerge(customers) AS customers\n"
        "FROM daily_channel_campaign\n"
        "WHERE day >= toDate($__fromTime) AND day <= toDate($__toTime)\n"
        "GROUP BY campaign ORDER BY events DESC LIMIT 20",
        "table",
    ),
    Panel(
        "Email funnel",
        "SELECT campaign, sum(sent) AS sent, sum(opened) AS opened, sum(clicked) AS clicked,\n"
        "  uniqExactIfMerge(unique_opened) AS unique_openers\n"
        "FROM daily_email_campaign\n"
        "WHERE day >= toDate($__fromTime) AND day <= toDate($__toTime)\n"
        "GROUP BY campaign ORDER BY sent DESC LIMIT 20",
        "table",
    ),
    Panel(
        "Revenue per day",
        "SELECT toStartOfDay(event_time) AS time, sum(revenue) AS revenue\n"
        "FROM events FINAL WHERE $__timeFilter(event_time)\n"
        "  AND (type = 'pos_transaction' OR name = 'Order Completed')\n"
        "GROUP BY time ORDER BY time",
        unit="currencyEUR",
    ),
    Panel(
        "Revenue by store and category",
        "SELECT store_id, category, sum(units) AS units, sum(revenue) AS revenue\n"
        "FROM daily_store_category\n"
        "WHERE day >= toDate($__fromTime) AND day <= toDate($__toTime)\n"
        "GROUP BY store_id, category ORDER BY revenue DESC LIMIT 30",
        "table",
    ),
    Panel(
        "Segment entries and exits",
        "SELECT $__timeInterval(at) AS time, concat(name, ' ', action) AS movement,"
        " count() AS customers\n"
        "FROM segment_changes FINAL WHERE kind = 'segment' AND $__timeFilter(at)\n"
        "GROUP BY time, movement ORDER BY time",
    ),
    Panel(
        "Segment sizes now",
        "SELECT segment, count() AS members FROM segment_members"
        " GROUP BY segment ORDER BY members DESC",
        "barchart",
    ),
    Panel(
        "Failed events by reason",
        "SELECT $__timeInterval(received_at) AS time, error_type, count() AS failed\n"
        "FROM failed_events WHERE $__timeFilter(received_at)\n"
        "GROUP BY time, error_type ORDER BY time",
    ),
    Panel(
        "Latest failures",
        "SELECT received_at, source, error_type, reason, substring(original, 1, 200) AS original\n"
        "FROM failed_events WHERE $__timeFilter(received_at)\n"
        "ORDER BY received_at DESC LIMIT 50",
        "table",
    ),
]

HEALTH = [
    Panel(
        "Events in (per second)",
        "sum by (source) (rate(crm_events_in_total[1m]))",
        legend="{{source}}",
    ),
    Panel(
        "Events and rows out (per second)",
        "sum by (sink, table) (rate(crm_events_out_total[1m]))",
        legend="{{sink}} {{table}}",
    ),
    Panel(
        "Dead letters (per second)",
        "sum by (error_type) (rate(crm_events_dead_lettered_total[5m]))",
        legend="{{error_type}}",
    ),
    Panel(
        "Consumer lag (records)",
        "sum by (group, topic) (max by (group, topic, partition) (crm_consumer_lag))",
        legend="{{group}} {{topic}}",
    ),
    Panel(
        "Sink flush latency p99",
        "histogram_quantile(0.99, sum by (sink, le)"
        " (rate(crm_sink_flush_duration_seconds_bucket[5m])))",
        unit="s",
        legend="{{sink}}",
    ),
    Panel(
        "Collector and API latency p99",
        "histogram_quantile(0.99, sum by (route, le)"
        " (rate(crm_http_request_duration_seconds_bucket[5m])))",
        unit="s",
        legend="{{route}}",
    ),
    Panel(
        "HTTP errors (per second)",
        'sum by (route, status) (rate(crm_http_requests_total{status=~"4..|5.."}[5m]))',
        legend="{{route}} {{status}}",
    ),
    Panel(
        "Retries after a dependency failed",
        "sum by (step) (rate(crm_retries_total[5m]))",
        legend="{{step}}",
    ),
]


def _target(panel: Panel, source: dict[str, str]) -> dict[str, Any]:
    if source is PROMETHEUS:
        return {
            "refId": "A",
            "datasource": source,
            "expr": panel.query,
            "legendFormat": panel.legend,
        }
    table = panel.kind in ("table", "barchart")
    return {
        "refId": "A",
        "datasource": source,
        "editorType": "sql",
        "rawSql": panel.query,
        "queryType": "table" if table else "timeseries",
        "format": 1 if table else 0,
    }


def dashboard(uid: str, title: str, panels: list[Panel], source: dict[str, str]) -> dict[str, Any]:
    out = []
    for i, p in enumerate(panels):
        out.append(
            {
                "id": i + 1,
                "type": p.kind,
                "title": p.title,
                "datasource": source,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": p.unit} if p.unit else {}, "overrides": []},
                "options": {},
                "targets": [_target(p, source)],
            }
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["crm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-7d", "to": "now"},
        "panels": out,
    }


def generate() -> dict[str, str]:
    docs = {
        "crm-analytics.json": dashboard("crm-analytics", "CRM analytics", ANALYTICS, CLICKHOUSE),
        "crm-pipeline-health.json": dashboard(
            "crm-pipeline-health", "CRM pipeline health", HEALTH, PROMETHEUS
        ),
    }
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in docs.items()}


def export(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


def stale(directory: Path = DASHBOARD_DIR) -> list[str]:
    return [
        name
        for name, text in generate().items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]


def expand_macros(sql: str, days: int = 30) -> str:
    """Grafana's ClickHouse macros as plain SQL over the last ``days`` (for tests)."""
    frm, to = f"now() - INTERVAL {days} DAY", "now()"
    out = sql.replace("$__fromTime", frm).replace("$__toTime", to)
    for macro, template in (
        ("$__timeFilter(", "({c} >= {frm} AND {c} <= {to})"),
        ("$__timeInterval(", "toStartOfInterval({c}, INTERVAL 1 HOUR)"),
    ):
        while macro in out:
            start = out.index(macro)
            end = out.index(")", start)
            column = out[start + len(macro) : end]
            out = out[:start] + template.format(c=column, frm=frm, to=to) + out[end + 1 :]
    return out
