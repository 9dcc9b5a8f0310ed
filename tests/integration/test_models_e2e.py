"""A purchase history replayed through the running pipeline leaves model scores in Redis."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from pipeline.bench.workload import purchase_history
from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer
from tests.integration.profiles import event_total, stored_profiles


def test_replayed_history_yields_churn_lifetime_value_and_recommendations(
    settings: Settings, tmp_path: Path
):
    records = purchase_history(settings, 300, days=500, seed=9)
    env = {
        "CRM_DATA_DIR": str(tmp_path),
        "CRM_TOPIC_PREFIX": settings.topic_prefix,
        "CRM_REDIS_PREFIX": settings.topic_prefix,
        "CRM_WORKER_ID": f"w{uuid.uuid4().hex[:6]}",
        "CRM_TOPIC_PARTITIONS": "3",
        "CRM_MODEL_REFIT_EVERY": "100",
        "CRM_MODEL_CHECKPOINT_S": "2",
    }
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    producer.send_sync(records, timeout=60)
    producer.close()
    with crm_process(["worker"], None, tmp_path / "worker.log", env=env):
        deadline = time.monotonic() + 180
        while event_total(settings, settings.topic_prefix) < len(records):
            assert time.monotonic() < deadline, "profiles did not take in every purchase"
            time.sleep(0.5)
        time.sleep(3)  # one more checkpoint
    profiles = list(stored_profiles(settings, settings.topic_prefix).values())
    assert profiles
    # every buyer carries a churn risk and where it comes from (a prior until the model
    # learned CRM_CHURN_MIN_LABELS labels; none at all before there is any basis)
    assert all("churn_source" in p.scores for p in profiles)
    scored = [p for p in profiles if p.scores["churn_risk"].value is not None]
    assert len(scored) > len(profiles) // 2
    assert all(0 <= p.scores["churn_risk"].value <= 1 for p in scored)
    assert {p.scores["churn_source"].value for p in scored} <= {
        "model",
        "prior:bgnbd",
        "prior:base-rate",
    }
    assert all(p.scores["churn_reasons"].value for p in scored)
    valued = [p for p in profiles if "lifetime_value" in p.scores]
    assert len(valued) > len(profiles) // 2  # scored after the first lifetime-value fit
    assert all(p.scores["lifetime_value"].value >= 0 for p in valued)
    recommended = [p for p in profiles if p.scores.get("recommendations")]
    assert len(recommended) > len(profiles) // 2
    for p in recommended:
        assert not set(p.scores["recommendations"].value) & set(p.skus_bought)
    summaries = list((tmp_path / "models").glob("**/*.json"))
    assert summaries, "no model checkpoint written"
    doc = json.loads(summaries[0].read_text())
    assert doc["churn"]["labels_learned"] > 0 and doc["offsets"]
    assert doc["versions"]["river"]
