"""Faults under load, each run ending in ``crm reconcile`` (issue 17's fault suite).

While simulated clients send events, the collector, the worker, the lookup API, the
ClickHouse sink and the archive sink are each SIGKILLed and restarted, and a poison record (bytes no contract reads, and a
record whose shape decodes but whose values no column holds) is written straight into
every internal topic. Afterwards every event the collector acknowledged must be in
ClickHouse exactly once (or dead-lettered with a reason), the profiles must count each
stored event once, and the raw archive must hold every record of the events topic once. Redis outages: ``test_redis_outage.py``; a broker lost from a
cluster: ``test_kafka_cluster.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.processes import crm_process
from pipeline.cli.reconcile import acknowledged, as_dict, run_reconcile
from pipeline.config import REPO_ROOT, Settings
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.kafka.topics import wait_ready
from pipeline.sinks.archive import read_archive
from pipeline.sinks.clickhouse.access import query
from pipeline.sources.simulator import Simulator
from tests.integration.conftest import free_port, wait_for

pytestmark = pytest.mark.faults

POISON_BYTES = b"\x00\xff not a record \xc3\x28"
# Decodes as JSON, fits no contract of the topic (or holds values no column can).
POISON_JSON = {
    "events": b'{"type":"track","messageId":"poison-1","event":{"nested":[1]}}',
    "events.by_customer": b'{"k":"event","customer_id":"c","event":{"type":"page","messageId":"poison-2","timestamp":"year 99999"}}',
    "profiles": b'{"customer_id":"c","version":-5,"updated_at":"never"}',
    "identity.merges": b'{"action":"merged","customer_id":7,"absorbed":"x"}',
    "segments.changes": b'{"customer_id":"c","segment":null,"entered":"maybe"}',
    "events.dlq": b'{"reason":123}',
}


def inject_poison(settings: Settings) -> int:
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    records = [
        Record(settings.topic(logical), key, value)
        for logical, bad in POISON_JSON.items()
        for key, value in ((b"poison", POISON_BYTES), (b"poison", bad))
    ]
    producer.send_sync(records, timeout=60)
    producer.close()
    return len(records)


def isolated(s: Settings, env: dict[str, str], data: Path) -> tuple[Settings, dict[str, str]]:
    """Settings and environment of processes whose state (archive, intents) is this test's,
    with the worker's consumer group named so that ``crm reconcile`` reads its lag."""
    s = s.model_copy(update={"worker_id": env["CRM_WORKER_ID"], "data_dir": data})
    return s, {**env, "CRM_CLICKHOUSE_BATCH": "200", "CRM_DATA_DIR": str(data)}


def assert_reconciled(s: Settings, accepted: int) -> None:
    """``crm reconcile`` after the consumers caught up: nothing lost, nothing doubled."""
    result = run_reconcile(s, wait_s=240)
    report = as_dict(result)
    assert result.lag == 0, report
    assert result.total.lost == 0 and result.total.duplicated == 0, report
    assert result.total.acknowledged >= accepted, report
    assert result.profiles_off_by == 0, report


@contextmanager
def restartable(
    args: list[str], log: Path, env: dict[str, str], health: str | None = None
) -> Iterator[dict[str, Any]]:
    """A crm process that ``restart()`` SIGKILLs and starts again."""
    stack = ExitStack()

    def start() -> Any:
        return stack.enter_context(crm_process(args, health, log, env=env))

    state: dict[str, Any] = {"proc": start()}

    def kill_and_restart() -> None:
        os.kill(state["proc"].pid, signal.SIGKILL)
        state["proc"].wait()
        state["proc"] = start()

    state["restart"] = kill_and_restart
    with stack:
        yield state


def test_kills_and_poison_under_load_lose_and_double_nothing(
    ch_settings: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    s, env = isolated(*ch_settings, tmp_path / "data")
    data = s.data_dir
    cport, aport = free_port(), free_port()
    with (
        restartable(["worker", "--name", "a"], tmp_path / "worker.log", env) as worker,
        restartable(["sink", "clickhouse"], tmp_path / "sink.log", env) as sink,
        restartable(
            ["sink", "archive", "--max-wait", "1"], tmp_path / "archive.log", env
        ) as archive,
        restartable(
            ["api", "--port", str(aport)],
            tmp_path / "api.log",
            env,
            f"http://127.0.0.1:{aport}/health",
        ) as api,
        restartable(
            ["collector", "--port", str(cport)],
            tmp_path / "collector.log",
            env,
            f"http://127.0.0.1:{cport}/health",
        ) as collector,
    ):
        sim = Simulator(f"http://127.0.0.1:{cport}", "it-write-key", customers=120, seed=11)
        load = threading.Thread(target=lambda: asyncio.run(sim.run(rate=250, duration=40)))
        load.start()
        time.sleep(6)
        poison = inject_poison(s)
        time.sleep(3)
        archive["restart"]()
        api["restart"]()
        time.sleep(3)
        sink["restart"]()
        time.sleep(6)
        collector["restart"]()  # requests in flight fail: the clients retry or count them
        time.sleep(6)
        worker["restart"]()
        time.sleep(4)
        sink["restart"]()
        load.join(120)
        assert sim.stats.accepted > 3000, sim.stats

        assert_reconciled(s, sim.stats.accepted)
        failed = query(
            s,
            "SELECT count() FROM failed_events WHERE error_type = 'sink' OR source LIKE 'worker%'",
            open_store=False,
        )["rows"][0][0]
        assert failed >= poison - 2, (failed, poison)  # the two on the DLQ topic are rows too

        def archived() -> Counter[str]:
            ids: Counter[str] = Counter()
            for path in read_archive(data / "archive"):
                with gzip.open(path, "rb") as lines:  # raw records, the poison ones too
                    for line in lines:
                        try:
                            ids[json.loads(line).get("messageId", "")] += 1
                        except ValueError:
                            continue
            return ids

        on_topic = Counter(event_id for _source, event_id in acknowledged(s))
        wait_for(archived, lambda ids: +ids == on_topic, 60, "every events record archived once")


@pytest.mark.timeout(600)
def test_broker_down_for_30s_under_load_loses_and_doubles_nothing(
    ch_settings: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """The single broker stopped for 30 s mid-load: the collector answers 503 meanwhile
    (those requests are not acknowledged), worker and sink wait and carry on."""
    s, env = isolated(*ch_settings, tmp_path / "data")
    cport = free_port()
    kafka = str(REPO_ROOT / "infra" / "kafka.sh")
    with (
        crm_process(["worker", "--name", "a"], None, tmp_path / "worker.log", env=env) as worker,
        crm_process(["sink", "clickhouse"], None, tmp_path / "sink.log", env=env) as sink,
        crm_process(
            ["collector", "--port", str(cport)],
            f"http://127.0.0.1:{cport}/health",
            tmp_path / "collector.log",
            env=env,
        ),
    ):
        sim = Simulator(f"http://127.0.0.1:{cport}", "it-write-key", customers=80, seed=12)
        load = threading.Thread(target=lambda: asyncio.run(sim.run(rate=150, duration=50)))
        load.start()
        time.sleep(8)
        subprocess.run([kafka, "stop"], check=True)
        try:
            time.sleep(30)
        finally:
            subprocess.run([kafka, "start"], check=True)
            wait_ready(s, 90)
        load.join(120)
        assert worker.poll() is None and sink.poll() is None, "a process exited"
        assert sim.stats.accepted > 1000 and sim.stats.failed_requests > 0, sim.stats

        assert_reconciled(s, sim.stats.accepted)
