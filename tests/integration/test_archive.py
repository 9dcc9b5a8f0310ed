"""The raw archive: hourly immutable files with manifests; a killed sink leaves no gap and no copy."""

from __future__ import annotations

import gzip
import json
import os
import signal
import time

import msgspec

from pipeline.bench.workload import simulated_records
from pipeline.cli.processes import crm_process
from pipeline.kafka.producer import ConfirmedProducer
from pipeline.sinks.archive import read_archive


def archived(root) -> tuple[int, list[dict]]:
    manifests = [json.loads(p.read_text()) for p in root.glob("date=*/hour=*/*.manifest.json")]
    return sum(m["records"] for m in manifests), manifests


def test_archive_is_complete_exactly_once_after_sigkill(settings, tmp_path):
    records = [
        r
        for r in simulated_records(settings, customers=50, touches=800)
        if r.topic.endswith(".events")
    ]
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    half = len(records) // 2
    producer.send_sync(records[:half], timeout=60)
    env = {"CRM_TOPIC_PREFIX": settings.topic_prefix, "CRM_DATA_DIR": str(tmp_path)}
    root = tmp_path / "archive"
    with crm_process(
        ["sink", "archive", "--max-wait", "0.5"], None, tmp_path / "a1.log", env=env
    ) as proc:
        deadline = time.monotonic() + 60
        while archived(root)[0] < half and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # files written, offsets maybe not committed
        proc.wait()
    producer.send_sync(records[half:], timeout=60)
    producer.close()
    with crm_process(["sink", "archive", "--max-wait", "0.5"], None, tmp_path / "a2.log", env=env):
        deadline = time.monotonic() + 60
        while archived(root)[0] < len(records) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
    total, manifests = archived(root)
    assert total == len(records)
    seen: set[tuple[int, int]] = set()
    for m in manifests:
        span = set((m["partition"], o) for o in range(m["first_offset"], m["last_offset"] + 1))
        assert not span & seen, "an offset archived twice"
        seen |= span
    ids = []
    for path in read_archive(root):
        assert path.parent.name.startswith("hour=") and path.parent.parent.name.startswith("date=")
        with gzip.open(path) as fh:
            ids += [msgspec.json.decode(line)["messageId"] for line in fh if line.strip()]
    assert len(ids) == len(set(ids)) == len(records)
