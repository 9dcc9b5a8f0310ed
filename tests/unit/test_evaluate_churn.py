"""`crm evaluate churn`: scores on a holdout and the reliability table (predicted vs observed)."""

from __future__ import annotations

import csv
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.models.evaluate import evaluate_churn, reliability


def test_reliability_of_calibrated_and_of_overconfident_predictions():
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(float)  # outcomes drawn at the stated odds
    calibrated = reliability(y, p)
    assert len(calibrated["deciles"]) == 10
    assert sum(row["customers"] for row in calibrated["deciles"]) == p.size
    assert calibrated["expected_calibration_error"] < 0.02
    for row in calibrated["deciles"]:
        assert abs(row["predicted"] - row["observed"]) < 0.05
    overconfident = reliability(y, np.clip(p * 1.6, 0, 1))  # says 0.8 where 0.5 happens
    assert overconfident["expected_calibration_error"] > 0.15


def test_reliability_with_fewer_customers_than_deciles():
    table = reliability(np.array([1.0, 0.0, 1.0]), np.array([0.9, 0.2, 0.6]))
    assert [row["customers"] for row in table["deciles"]] == [1, 1, 1]
    assert [row["observed"] for row in table["deciles"]] == [0.0, 1.0, 1.0]


def _history(path: Path, customers: int = 300, seed: int = 3) -> None:
    """Purchases of customers with their own rates who drop out for good, over two years."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["customer_id", "timestamp", "amount"])
        for c in range(customers):
            t = start + timedelta(days=rng.uniform(0, 200))
            rate, quit_p = rng.uniform(1 / 60, 1 / 10), rng.uniform(0.02, 0.3)
            while t < start + timedelta(days=730):
                out.writerow([f"c{c}", t.isoformat(), round(rng.uniform(5, 80), 2)])
                if rng.random() < quit_p:
                    break
                t += timedelta(days=rng.expovariate(rate))


def test_evaluate_churn_reports_reliability_for_the_model_and_the_baseline(tmp_path: Path):
    data = tmp_path / "tx.csv"
    _history(data)
    result = evaluate_churn(data, date(2024, 12, 31), date(2025, 6, 30))
    for side in ("streaming", "bgnbd_baseline"):
        table = result[side]["reliability"]
        assert sum(row["customers"] for row in table["deciles"]) == result["customers"]
        predicted = [row["predicted"] for row in table["deciles"]]
        assert predicted == sorted(predicted) and predicted[0] >= 0 and predicted[-1] <= 1
        assert 0 <= table["expected_calibration_error"] <= 1
    # the baseline ranks buyers above non-buyers on data drawn from its own assumptions
    assert result["bgnbd_baseline"]["roc_auc"] > 0.6

    shown = CliRunner().invoke(
        app,
        ["evaluate", "churn", "--transactions", str(data), "--calibration-end", "2024-12-31",
         "--holdout-end", "2025-06-30"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "reliability.deciles[10]" in shown.output and "observed" in shown.output
