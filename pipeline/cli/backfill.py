"""``crm backfill`` and ``crm replay``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import get_settings
from pipeline.logs import configure

console = Console(stderr=True)


def require_extra(module: str, extra: str, why: str) -> None:
    """Exit with how to install an optional part when its package is missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        console.print(f"[red]{why}:[/red] pip install 'crm-pipeline\\[{extra}]'")
        raise typer.Exit(2) from None


def _day(value: str | None, flag: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=flag) from None


def backfill_cmd(
    from_: str = typer.Option(None, "--from", help="First archive day, YYYY-MM-DD (inclusive)"),
    to: str = typer.Option(None, "--to", help="Last archive day, YYYY-MM-DD (inclusive)"),
    input_file: Path = typer.Option(
        None, "--input", exists=True, dir_okay=False, help="CSV transactions or JSON Lines events"
    ),
    runner: str = typer.Option(
        "direct", help="Beam runner: direct, flink, spark, prism, portable, dataflow"
    ),
    job_endpoint: str = typer.Option(
        None,
        "--job-endpoint",
        help="HOST:PORT of a running Beam job server (Flink's, Spark's, Prism's); "
        "portable runners run the Python SDK harness in this process (LOOPBACK) "
        "unless --beam-option=--environment_type=... says otherwise",
    ),
    target: str = typer.Option("redis,clickhouse", help="Comma-separated: redis, clickhouse"),
    archive: str = typer.Option(
        None, help="Archive root: a directory, gs://… or s3://… (default <data dir>/archive)"
    ),
    beam_option: list[str] = typer.Option(
        [], "--beam-option", help="Extra Beam pipeline option, e.g. --beam-option=--project=x"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
) -> None:
    """Rebuild profiles (Redis) and events/aggregates (ClickHouse) with Apache Beam."""
    require_extra("apache_beam", "backfill", "crm backfill runs on Apache Beam")
    from pipeline.backfill import archive_io
    from pipeline.backfill.inputs import import_file
    from pipeline.backfill.run import run_backfill

    settings = get_settings()
    configure(settings)
    targets = tuple(t.strip() for t in target.split(",") if t.strip())
    rejected: list[dict[str, object]] = []
    if input_file is not None:
        if from_ or to:
            raise typer.BadParameter("give either --input or --from/--to", param_hint="--input")
        try:
            imported = import_file(settings, input_file)
        except ValueError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(2) from None
        rejected = imported.rejected
        kwargs: dict[str, object] = {"events": imported.events, "total": len(imported.events)}
    else:
        start, end = _day(from_, "--from"), _day(to, "--to")
        if start and end and start > end:
            raise typer.BadParameter(f"--from {start} is after --to {end}", param_hint="--from")
        root = archive or str(settings.data_dir / "archive")
        files, total = archive_io.size(root, start, end)
        if not files:
            console.print(f"[yellow]no archive files in {root} for {start or '…'} to {end or '…'}")
        kwargs = {"archive": root, "start": start, "end": end, "total": total}
    try:
        result = run_backfill(
            settings,
            targets=targets,
            runner=runner,
            extra_options=beam_option,
            job_endpoint=job_endpoint,
            console=console,
            **kwargs,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    summary: dict[str, object] = {
        "events": result.events,
        "seconds": round(result.seconds, 2),
        "events_per_second": round(result.rate, 1),
        "rejected": len(rejected),
        **result.counters,
    }
    if rejected:
        rejects = settings.data_dir / "backfill-rejects.jsonl"
        rejects.parent.mkdir(parents=True, exist_ok=True)
        rejects.write_text("".join(json.dumps(r) + "\n" for r in rejected))
        summary["rejects_file"] = str(rejects)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title="backfill summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)


def replay_cmd(
    from_: str = typer.Option(None, "--from", help="First archive day, YYYY-MM-DD (inclusive)"),
    to: str = typer.Option(None, "--to", help="Last archive day, YYYY-MM-DD (inclusive)"),
    topic: str = typer.Option("events", help="Topic (without the CRM_TOPIC_PREFIX)"),
    rate: float = typer.Option(5000.0, min=1.0, help="Events per second at most"),
    archive: Path = typer.Option(None, help="Archive directory (default <data dir>/archive)"),
) -> None:
    """Re-publish archived events into Kafka, marked as replayed, rate limited."""
    from pipeline.backfill.inputs import archive_files
    from pipeline.backfill.replay import replay

    settings = get_settings()
    configure(settings)
    start, end = _day(from_, "--from"), _day(to, "--to")
    files, total = archive_files(archive or settings.data_dir / "archive", start, end)
    sent = replay(
        settings, files, topic=settings.topic(topic), rate=rate, total=total, console=console
    )
    console.print(f"replayed {sent:,} events from {len(files)} archive files into {topic}")


def register(app: typer.Typer) -> None:
    app.command("backfill")(backfill_cmd)
    app.command("replay")(replay_cmd)
