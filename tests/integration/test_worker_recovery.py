"""Crash and scale: SIGKILL a worker mid-stream and add a second one; profiles stay exact.

The reference is a single careful pass with the same pure functions: the
in-memory identity graph over every event, then a fold per customer. Customer
ids may differ (which customer survives a merge depends on arrival order), so
profiles are matched through their identifiers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer
from tests.integration.profiles import assert_matches_reference, wait_settled, workload


def test_sigkill_and_rebalance_keep_profiles_exact(settings: Settings, tmp_path: Path):
    group = f"w{uuid.uuid4().hex[:6]}"
    env = {
        "CRM_TOPIC_PREFIX": settings.topic_prefix,
        "CRM_REDIS_PREFIX": settings.topic_prefix,
        "CRM_WORKER_ID": group,
        "CRM_TOPIC_PARTITIONS": "3",
        "CRM_WORKER_BATCH": "200",
    }
    chunks = workload(settings, customers=120, touches=1500)
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)

    def publish() -> None:
        for chunk in chunks:
            producer.send_sync(chunk, timeout=60)
            time.sleep(0.05)

    feeder = threading.Thread(target=publish)
    with ExitStack() as stack:
        first = stack.enter_context(
            crm_process(["worker", "--name", "a"], None, tmp_path / "a1.log", env=env)
        )
        feeder.start()
        time.sleep(6)
        os.kill(first.pid, signal.SIGKILL)  # no shutdown, no final commit, no flush
        first.wait()
        stack.enter_context(
            crm_process(["worker", "--name", "a"], None, tmp_path / "a2.log", env=env)
        )
        time.sleep(4)
        stack.enter_context(
            crm_process(["worker", "--name", "b"], None, tmp_path / "b.log", env=env)
        )
        feeder.join()
        producer.close()
        # Wait until every event is in a Redis profile and nothing changes any more.
        total = sum(len(c) for c in chunks)
        prefix = settings.topic_prefix
        wait_settled(settings, prefix, total, group, 240)

    assert_matches_reference(settings, settings.topic_prefix, total)
