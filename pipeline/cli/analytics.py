"""``crm migrate``, ``crm sink clickhouse``, ``crm sql``, ``crm report``."""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.reconcile import reconcile_cmd
from pipeline.config import get_settings
from pipeline.logs import configure
from pipeline.sinks.clickhouse.access import query
from pipeline.sinks.clickhouse.client import MIGRATIONS, QUERIES, connect, migrate

analytics_app = typer.Typer(help="ClickHouse analytics")
console = Console()


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_cmd)
    app.command("sql")(sql_cmd)
    app.command("report")(report_cmd)
    app.command("reconcile")(reconcile_cmd)
    sink_app = typer.Typer(help="Run a sink")
    sink_app.command("clickhouse")(sink_clickhouse)
    sink_app.command("archive")(sink_archive)
    app.add_typer(sink_app, name="sink")


def migrate_cmd(
    cluster: str = typer.Option(
        None, help="Print the migrations rewritten for this ClickHouse cluster (ON CLUSTER)"
    ),
) -> None:
    """Apply ClickHouse migrations in infra/clickhouse/migrations (idempotent, versioned).

    With ``--cluster NAME`` nothing is applied: the DDL for replicated local tables and
    Distributed tables is printed, to run with clickhouse-client on the cluster.
    """
    if cluster:
        from pipeline.sinks.clickhouse.cluster_ddl import cluster_statements

        seen: set[str] = set()
        for path in sorted(MIGRATIONS.glob("*.sql")):
            print(f"-- {path.name}")
            for stmt in cluster_statements(path.read_text(), cluster, seen):
                print(stmt + ";\n")
        return
    settings = get_settings()
    client = connect(settings.clickhouse_dsn)
    applied = migrate(client)
    client.close()
    console.print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


def _observe(port: int | None, group: str, topics: list[str]) -> None:
    """Serve /metrics and report the consumer group's lag (``--metrics-port``, 0: off)."""
    from pipeline.kafka.lag import LagReporter
    from pipeline.metrics import serve

    settings = get_settings()
    port = settings.metrics_port if port is None else port
    if port:
        serve(port, settings.metrics_host)
        LagReporter(settings.kafka_bootstrap, group, topics).start()


METRICS_PORT = typer.Option(
    None, help="Prometheus /metrics port (default CRM_METRICS_PORT; 0: off)"
)


def sink_clickhouse(metrics_port: int | None = METRICS_PORT) -> None:
    """Consume events, dead letters, profile snapshots and merges into ClickHouse."""
    from pipeline.sinks.clickhouse.runner import consumer_group, sink_main, source_topics

    settings = get_settings()
    configure(settings)
    _observe(metrics_port, consumer_group(settings), source_topics(settings))
    client = connect(settings.clickhouse_dsn)
    migrate(client)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sink_main(settings, client, stop, serve_sql=settings.clickhouse_dsn.startswith("chdb://"))
    client.close()


def sink_archive(
    max_wait: float = typer.Option(5.0, help="Seconds to collect before writing files"),
    metrics_port: int | None = METRICS_PORT,
) -> None:
    """Write valid events to hourly, immutable JSON Lines files (input of Beam backfills)."""
    from pipeline.sinks.archive import ArchiveSink, consumer_group

    settings = get_settings()
    configure(settings)
    _observe(metrics_port, consumer_group(settings), [settings.topic("events")])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ArchiveSink(settings).run(stop, max_wait=max_wait)


def render(result: dict[str, Any], fmt: str, title: str | None = None) -> None:
    columns, rows = result["columns"], result["rows"]
    if fmt == "json":
        console.print_json(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str)
        )
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        print(buf.getvalue(), end="")
    else:
        table = Table(title=title)
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*[str(v) for v in r])
        console.print(table)


def sql_cmd(
    statement: str = typer.Argument(None, help="A read-only SQL statement"),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the statement from a file"),
    fmt: str = typer.Option("table", "--format", help="table, csv or json"),
) -> None:
    """Run SQL against ClickHouse (through the sink process when it owns the embedded store)."""
    if file is not None:
        statement = file.read_text()
    if not statement:
        console.print("[red]give a statement or --file")
        raise typer.Exit(2)
    try:
        render(query(get_settings(), statement), fmt)
    except Exception as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from None


REPORT = [
    (
        "Traffic and conversion by channel (last 30 days)",
        "SELECT channel, sum(events) AS events, uniqExactMerge(customers) AS customers, "
        "sum(conversions) AS conversions, sum(revenue) AS revenue FROM daily_channel_campaign "
        "WHERE day >= today() - 30 GROUP BY channel ORDER BY events DESC",
    ),
    (
        "Revenue by store (top 10)",
        "SELECT store_id, uniqExactMerge(transactions) AS transactions, sum(revenue) AS revenue "
        "FROM daily_store_category GROUP BY store_id ORDER BY revenue DESC LIMIT 10",
    ),
    ("Email funnel", (QUERIES / "email_funnel.sql").read_text()),
    (
        "Rejected events",
        (QUERIES / "failed_events_by_reason.sql").read_text().replace("LIMIT 20", "LIMIT 5"),
    ),
    (
        "Customers",
        "SELECT count() AS customers, countIf(orders > 0) AS buyers, sum(revenue) AS revenue, "
        "round(avg(events), 1) AS avg_events FROM profile_snapshots FINAL WHERE merged_into = ''",
    ),
]


def report_cmd() -> None:
    """A one-screen overview from ClickHouse."""
    settings = get_settings()
    for title, sql in REPORT:
        try:
            render(query(settings, sql), "table", title)
        except Exception as exc:
            console.print(f"[red]{title}: {exc}")
