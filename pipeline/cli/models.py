"""``crm evaluate churn|recs`` and ``crm datasets fetch``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import get_settings

console = Console()
evaluate_app = typer.Typer(help="Measure the models on real data against classic baselines")
datasets_app = typer.Typer(help="Public data sets shipped in PyPI packages")


def _date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=flag) from None


def _flat(prefix: str, doc: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for k, v in doc.items():
        if isinstance(v, dict):
            rows += _flat(f"{prefix}{k}.", v)
        elif isinstance(v, list) and v and all(isinstance(item, dict) for item in v):
            # a table (a reliability table's deciles): one line per row
            for n, item in enumerate(v, start=1):
                rows.append((f"{prefix}{k}[{n}]", "  ".join(f"{a} {b}" for a, b in item.items())))
        else:
            rows.append((f"{prefix}{k}", f"{v:,}" if isinstance(v, int) else str(v)))
    return rows


def _show(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=title, show_header=False)
    for k, v in _flat("", result):
        table.add_row(k, v)
    console.print(table)


@evaluate_app.command("churn")
def evaluate_churn_cmd(
    transactions: Path = typer.Option(
        ..., exists=True, dir_okay=False, help="CSV with customer_id,timestamp,amount"
    ),
    calibration_end: str = typer.Option(..., help="Last day the models learn from"),
    holdout_end: str = typer.Option(None, help="Last day of the holdout (default: file end)"),
    silence_days: float = typer.Option(
        90.0, help="Churn label window used while learning (fixed for the evaluation)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Churn probability and expected purchases vs a BG/NBD baseline, on a holdout."""
    from pipeline.models.churn import Silence
    from pipeline.models.evaluate import evaluate_churn

    cal = _date(calibration_end, "--calibration-end")
    assert cal is not None
    silence = Silence(multiple=float("inf"), min_days=silence_days, fallback_days=silence_days)
    try:
        result = evaluate_churn(transactions, cal, _date(holdout_end, "--holdout-end"), silence)
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    _show(result, as_json, "churn and lifetime value vs BG/NBD")


@evaluate_app.command("recs")
def evaluate_recs_cmd(
    interactions: Path = typer.Option(
        ..., exists=True, dir_okay=False, help="CSV with user_id,item_id,timestamp[,rating]"
    ),
    k: int = typer.Option(10, min=1, help="Length of the recommendation list"),
    test_every: int = typer.Option(10, min=1, help="Test every n-th interaction (all learn)"),
    mf: bool = typer.Option(True, help="Also measure river matrix factorization"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Prequential hit rate, recall and NDCG at k vs popularity (and river MF)."""
    from pipeline.models.evaluate import evaluate_recs

    try:
        result = evaluate_recs(interactions, k, test_every, mf)
    except ValueError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    _show(result, as_json, "recommendations vs popularity")


@datasets_app.command("fetch")
def datasets_fetch(
    into: Path = typer.Option(None, help="Directory (default <data dir>/datasets)"),
) -> None:
    """CDNOW (from the lifetimes wheel) and MovieLens 100K (from the recbole wheel) as CSV."""
    from pipeline.models.datasets import fetch

    for name, path in fetch(into or get_settings().data_dir / "datasets").items():
        console.print(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(evaluate_app, name="evaluate")
    app.add_typer(datasets_app, name="datasets")
