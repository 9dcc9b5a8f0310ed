"""``crm``: one entry point for operators (services, collector, simulator, imports, demo)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from pipeline.cli.analytics import register as register_analytics
from pipeline.cli.backfill import register as register_backfill
from pipeline.cli.models import register as register_models
from pipeline.cli.segments import register as register_segments
from pipeline.config import REPO_ROOT, Settings, get_settings
from pipeline.logs import configure

if TYPE_CHECKING:
    from starlette.applications import Starlette

app = typer.Typer(help="Real-time customer data pipeline", no_args_is_help=True)
import_app = typer.Typer(help="Import feeds from files")
schemas_app = typer.Typer(help="Event contract files in schemas/")
dashboards_app = typer.Typer(help="Grafana dashboards in infra/grafana/dashboards/")


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__

        print(f"crm-pipeline {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
    """Real-time customer data pipeline. Settings: CRM_* environment variables or ./.env."""


app.add_typer(import_app, name="import")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dashboards_app, name="dashboards")
console = Console()
register_analytics(app)
register_backfill(app)
register_models(app)
register_segments(app)


def _services(action: str) -> None:
    result = subprocess.run([str(REPO_ROOT / "infra" / "services.sh"), action], check=False)
    if result.returncode != 0:
        raise typer.Exit(result.returncode)


HTTP_PROTOCOL = "pipeline.cli.bounded_http:BoundedHttpToolsProtocol"


def bounded_http_protocol(max_head_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the request head bounded (``bounded_http.py``)."""
    from pipeline.cli.bounded_http import BoundedHttpToolsProtocol

    return type(
        "BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"max_head_bytes": max_head_bytes}
    )


def _serve(asgi_app: Starlette | str, host: str, port: int, workers: int = 1) -> None:
    """Serve an ASGI app with uvloop and httptools, logging through our structured logs.

    With ``workers > 1`` the app is given as an import string of a factory, and
    uvicorn forks that many processes sharing the socket.
    """
    import uvicorn

    settings = get_settings()
    configure(settings)
    if isinstance(asgi_app, str) and workers > 1:
        from pipeline.metrics import prepare_multiprocess

        # one /metrics answer for all processes, whichever one a scrape reaches
        prepare_multiprocess(settings.data_dir / "prometheus" / f"{host}-{port}")
    uvicorn.run(
        asgi_app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        # several processes are spawned: they import the class (it reads the limit from
        # the environment) since a class made here cannot be pickled over to them
        http=HTTP_PROTOCOL
        if isinstance(asgi_app, str) and workers > 1
        else bounded_http_protocol(settings.max_header_bytes),
        workers=workers if isinstance(asgi_app, str) else None,
        factory=isinstance(asgi_app, str),
    )


@app.command()
def up() -> None:
    """Start Kafka (KRaft) and Redis on loopback, create topics (idempotent)."""
    _services("up")


@app.command()
def down() -> None:
    """Stop the local Kafka and Redis started by `crm up`."""
    _services("down")


@app.command("infra-ready", hidden=True)
def infra_ready(timeout: float = 90.0) -> None:
    """Wait for the broker through the admin API, then create missing topics."""
    from pipeline.kafka.topics import ensure_topics, wait_ready

    settings = get_settings()
    wait_ready(settings, timeout)
    created = ensure_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[green]kafka ready[/] at {settings.kafka_bootstrap}; created topics: {created or 'none'}"
    )


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
) -> None:
    """One-screen overview: services, topics with offsets, Redis and ClickHouse.

    Exits 1 when Kafka, Redis or ClickHouse is down (usable as a health check).
    """
    from pipeline.cli.status import render_status

    if not render_status(get_settings(), console, as_json):
        raise typer.Exit(1)


@app.command()
def collector(
    host: str = typer.Option(None, help="Bind address (default CRM_COLLECTOR_HOST)"),
    port: int = typer.Option(None, help="Port (default CRM_COLLECTOR_PORT)"),
) -> None:
    """Run the HTTP collector (Segment-compatible API, webhooks, POS, consent, support)."""
    from pipeline.sources.collector.app import create_app

    settings = get_settings()
    _serve(create_app(settings), host or settings.collector_host, port or settings.collector_port)


@app.command()
def simulate(
    customers: int = typer.Option(500, help="Number of simulated customers"),
    rate: float = typer.Option(200.0, help="Events per second"),
    duration: float = typer.Option(30.0, help="Seconds to run"),
    seed: int = typer.Option(7, help="Random seed"),
    url: str = typer.Option("", help="Collector URL (default from settings)"),
) -> None:
    """Send realistic multi-channel customer traffic through the collector over HTTP."""
    from pipeline.cli.report import print_sim_stats
    from pipeline.sources.simulator import Simulator

    settings = get_settings()
    base = url or f"http://{settings.collector_host}:{settings.collector_port}"
    key = sorted(settings.write_key_set)[0]
    sim = Simulator(base, key, customers, seed)
    stats = asyncio.run(sim.run(rate, duration))
    print_sim_stats(stats, console)


@app.command()
def api(
    host: str = typer.Option(None, help="Bind address (default CRM_API_HOST)"),
    port: int = typer.Option(None, help="Port (default CRM_API_PORT)"),
    workers: int = typer.Option(None, min=1, help="Processes (default CRM_API_WORKERS)"),
) -> None:
    """Run the profile lookup and personalization API (decisions read Redis only)."""
    from pipeline.api.app import create_app

    settings = get_settings()
    n = workers or settings.api_workers
    target: Starlette | str = "pipeline.api.app:create_app" if n > 1 else create_app(settings)
    _serve(target, host or settings.api_host, port or settings.api_port, n)


@app.command()
def worker(name: str = typer.Option(None, help="Worker name (default CRM_WORKER_NAME)")) -> None:
    """Run a stream worker (identity + profiles); start several for more throughput."""
    import os

    if name:
        os.environ["CRM_WORKER_NAME"] = name
        get_settings.cache_clear()
    from pipeline.worker.main import run_worker

    run_worker(get_settings())


@app.command()
def token(
    customer: str = typer.Option(..., help="Customer id the token is for"),
    ttl: int = typer.Option(3600, help="Seconds until it expires (at most 7 days)"),
) -> None:
    """Print an X-Customer-Token (what the site's backend computes for a logged-in customer)."""
    from pipeline.api.customer_token import TokenError, issue

    try:
        print(issue(get_settings().customer_token_secret, customer, ttl))
    except TokenError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def forget(
    customer: str = typer.Option(None, help="Customer id"),
    identifier: str = typer.Option(None, help="Or an identifier as type:value (e.g. email:a@b.c)"),
) -> None:
    """Erase a customer: identity links, profile in the table and in Redis."""
    from pipeline.stores.forget import forget_customer, owner_of

    settings = get_settings()
    if identifier:
        owner = owner_of(settings, identifier)
        if owner is None:
            console.print(f"[red]no customer with {identifier}")
            raise typer.Exit(1)
        customer = owner
    if not customer:
        console.print("[red]give --customer or --identifier")
        raise typer.Exit(2)
    removed = forget_customer(settings, customer)
    console.print(f"forgot {customer}: removed {len(removed)} identifiers; profile deletion queued")


@import_app.command("pos")
def import_pos(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV, one row per line item"
    ),
    mapping: list[str] = typer.Option([], "--map", help="our_column=their_column, repeatable"),
    rejects: Path | None = typer.Option(None, help="Where to write rejected rows (CSV)"),
    restart: bool = typer.Option(False, help="Ignore the resume checkpoint and start over"),
) -> None:
    """Import store transactions from CSV: resumable, with a rejected-rows report."""
    from pipeline.sources.pos_csv import import_file, parse_mapping

    result = import_file(get_settings(), file, parse_mapping(mapping), rejects, restart=restart)
    console.print(result.summary())
    if result.rejected:
        console.print(f"rejected rows written to [bold]{result.rejects_path}[/]")


def _export(check: bool, what: str, command: str, export: Any, stale: Any) -> None:
    """Write generated files, or with ``check`` fail when the committed ones differ."""
    if check:
        diff = stale()
        if diff:
            console.print(f"[red]stale {what}:[/] {', '.join(diff)}; run `{command}`")
            raise typer.Exit(1)
        console.print(f"{what} up to date")
        return
    for path in export():
        console.print(f"wrote {path.relative_to(REPO_ROOT)}")


CHECK = typer.Option(False, help="Fail if files differ instead of writing")


@dashboards_app.command("export")
def dashboards_export(check: bool = CHECK) -> None:
    """Generate the Grafana dashboards (ClickHouse analytics, pipeline health)."""
    from pipeline.cli.dashboards import export, stale

    _export(check, "dashboards", "crm dashboards export", export, stale)


@schemas_app.command("export")
def schemas_export(check: bool = CHECK) -> None:
    """Generate schemas/*.json from the Python event models."""
    from pipeline.contracts import export, stale

    _export(check, "schemas", "crm schemas export", export, stale)


@app.command()
def demo(
    duration: float = typer.Option(60.0, help="Seconds of simulated traffic"),
    rate: float = typer.Option(300.0, help="Events per second"),
    customers: int = typer.Option(300, help="Simulated customers"),
) -> None:
    """Start everything, simulate a minute of traffic, and summarise what happened."""
    from pipeline.cli.demo import run_demo

    sys.exit(run_demo(get_settings(), console, duration=duration, rate=rate, customers=customers))


@app.command()
def bench(
    out: Path = typer.Option(Path("bench-results"), help="Directory for JSON results"),
    events: int = typer.Option(200_000, help="Events to send through the batch endpoint"),
    touches: int = typer.Option(20_000, help="Simulated customer touches for the worker benchmark"),
    only: str = typer.Option(
        "collector,worker,memory,clickhouse,backfill,personalization",
        help="collector,worker,memory,clickhouse,backfill,personalization",
    ),
    memory_events: int = typer.Option(
        1_000_000, help="Events (over 50,000 customers) for the worker memory benchmark"
    ),
) -> None:
    """Run benchmarks and write JSON results (one file per benchmark).

    Benchmark data (topics, Redis keys, local state under ``bench<time><hex>`` tags) is
    dropped: stale runs' before, this run's after.
    """
    from pipeline.bench.cleanup import created, drop_bench_data

    settings = get_settings()
    out.mkdir(parents=True, exist_ok=True)
    parts = set(only.split(","))
    # Leftovers of runs that ended without cleaning up (older than a run can last); a run
    # still going elsewhere on the same broker keeps its data.
    console.print({"dropped stale": drop_bench_data(settings)})
    try:
        _run_benchmarks(settings, out, parts, events, touches, memory_events)
    finally:
        try:
            console.print({"dropped own": drop_bench_data(settings, only=created)})
        except Exception as exc:  # never hide the benchmark's own outcome
            console.print(f"[yellow]benchmark data not dropped: {exc}[/yellow]")


def _run_benchmarks(
    settings: Settings, out: Path, parts: set[str], events: int, touches: int, memory_events: int
) -> None:
    import json

    if "collector" in parts:
        from pipeline.bench.collector import run_collector_bench

        run_collector_bench(settings, console, out, events)
    if "worker" in parts:
        from pipeline.bench.worker import run_worker_bench

        result = run_worker_bench(settings, console, touches)
        (out / "worker.json").write_text(json.dumps(result, indent=2) + "\n")
    if "memory" in parts:
        from pipeline.bench.worker_memory import worker_memory

        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        mem = worker_memory(settings, logs, events=memory_events)
        console.print({k: v for k, v in mem.items() if k != "samples"})
        (out / "worker-memory.json").write_text(json.dumps(mem, indent=2) + "\n")
    if "clickhouse" in parts:
        from pipeline.bench.clickhouse import sink_throughput

        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        ch = {"sink_throughput": sink_throughput(settings, logs, touches * 3)}
        console.print(ch)
        (out / "clickhouse.json").write_text(json.dumps(ch, indent=2) + "\n")
    if "backfill" in parts:
        from pipeline.bench.backfill import run_backfill_bench

        bf = run_backfill_bench(settings, console, touches * 5)
        (out / "backfill.json").write_text(json.dumps(bf, indent=2) + "\n")
    if "personalization" in parts:
        from pipeline.bench.personalization import run_personalization_bench

        pers = run_personalization_bench(settings, console, touches)
        (out / "personalization.json").write_text(json.dumps(pers, indent=2) + "\n")


if __name__ == "__main__":
    app()
