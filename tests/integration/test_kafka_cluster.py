"""Three Kafka brokers, one SIGKILLed under load and restarted: nothing acknowledged is lost.

The test starts its own three-node KRaft cluster (infra/kafka-cluster.sh) with topics of
replication factor 3 and min.insync.replicas 2, runs the collector and two workers on it
and posts simulated traffic the way an SDK does: a 503 is retried with the same body (the
same messageIds), a 200 counts its events as acknowledged. Mid-load the broker that
coordinates the workers' consumer group is SIGKILLed, later restarted with its data.
Then: the collector only ever answered 200 or 503, every acknowledged event is in
``crm.events`` and counted exactly once in the Redis profiles, and every profile equals
a single clean pass over the stored events. Redis is the shared test Redis.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource

from pipeline.cli.processes import crm_process, http_service
from pipeline.config import REPO_ROOT, Settings
from pipeline.events import Event
from pipeline.kafka.inspect import read_range
from pipeline.kafka.topics import TOPICS, ensure_topics, wait_ready
from pipeline.sources.simulator import Simulator
from tests.integration.conftest import (
    TEST_ENV,
    free_port,
    group_members,
    wait_for,
    wait_until,
)
from tests.integration.profiles import assert_matches_reference, wait_settled

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

CLUSTER = str(REPO_ROOT / "infra" / "kafka-cluster.sh")
CLUSTER_ENV = {
    # Apart from the dev broker (9092), the test broker (19092) and the dev cluster (29092).
    "CRM_KAFKA_CLUSTER_PORT": "39092",
    "CRM_KAFKA_CLUSTER_DIR": str(Path(TEST_ENV["CRM_DATA_DIR"]) / "kafka-cluster"),
    "CRM_KAFKA_HEAP": "512m",
}


@dataclass
class Cluster:
    bootstrap: str

    def run(self, *args: str) -> str:
        return run_cluster(*args)

    def admin(self) -> AdminClient:
        """A client per question, gone when it is answered: a long-lived one aborted the test
        process (librdkafka 2.16.0, ``rd_kafka_enq_once_del_source_return: Assertion
        eonce->refcnt > 0``) when the broker its last coordinator request went to died."""
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})


def run_cluster(*args: str) -> str:
    done = subprocess.run(
        [CLUSTER, *args],
        env={**os.environ, **CLUSTER_ENV},
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def kafka_cluster(services: dict[str, str]) -> Iterator[Cluster]:
    """Three fresh brokers for this test; stopped and their data deleted afterwards."""
    run_cluster("clean")  # what an interrupted earlier run left
    run_cluster("start")
    try:
        yield Cluster(run_cluster("bootstrap"))
    finally:
        run_cluster("clean")


class Load(threading.Thread):
    """Simulated customers posting through the collector like an SDK: 503 -> retry."""

    def __init__(self, url: str, write_key: str) -> None:
        super().__init__(name="load", daemon=True)
        self.url = url
        self.write_key = write_key
        self.sim = Simulator(url, write_key, customers=150, seed=5, invalid_share=0.0)
        self.statuses: Counter[str] = Counter()  # every answer, retries included
        self.accepted = 0  # events in requests answered 200
        self.requests = 0  # requests answered 200
        self.retried = 0  # requests that needed more than one attempt
        self.problems: list[str] = []  # anything but 200 and 503, a rejected event, a give-up
        self.halt = threading.Event()

    def bodies(self) -> list[tuple[str, Any]]:
        for _ in range(12):
            self.sim.touch(self.sim.rng.choice(self.sim.customers))
        queues, self.sim.queues = self.sim.queues, {"batch": [], "sendgrid": [], "pos": []}
        out: list[tuple[str, Any]] = []
        if queues["batch"]:
            out.append(("/v1/batch", {"batch": queues["batch"], "sentAt": now_iso()}))
        if queues["sendgrid"]:
            out.append(("/v1/webhooks/sendgrid", queues["sendgrid"]))
        if queues["pos"]:
            out.append(("/v1/pos/transactions", queues["pos"]))
        return out

    def run(self) -> None:
        with httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=30) as client:
            while not self.halt.is_set():
                for path, body in self.bodies():
                    self.deliver(client, path, body)
                time.sleep(0.05)

    def deliver(self, client: httpx.Client, path: str, body: Any) -> None:
        """Post until the collector answers 200; the same body each time."""
        give_up = time.monotonic() + 180
        attempts = 0
        while time.monotonic() < give_up:
            attempts += 1
            try:
                resp = client.post(path, json=body)
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1
                self.problems.append(f"{path}: {exc!r}")
                time.sleep(0.5)
                continue
            self.statuses[str(resp.status_code)] += 1
            if resp.status_code == 200:
                doc = resp.json()
                self.accepted += int(doc["accepted"])
                self.requests += 1
                self.retried += attempts > 1
                if doc.get("rejected"):
                    self.problems.append(f"{path}: rejected {doc['rejected']}")
                return
            if resp.status_code != 503:
                self.problems.append(f"{path}: {resp.status_code} {resp.text[:200]}")
                return
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        self.problems.append(f"{path}: still 503 after 180 s")

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=240)
        assert not self.is_alive(), "the load thread did not finish its last request"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def coordinator_of(cluster: Cluster, group: str) -> int:
    """The broker that coordinates the consumer group (commits, joins, heartbeats)."""
    admin = cluster.admin()
    described = admin.describe_consumer_groups([group], request_timeout=10)
    return int(described[group].result().coordinator.id)


def under_replicated(cluster: Cluster, prefix: str) -> list[str]:
    """Partitions of this test's topics whose in-sync replicas are fewer than three."""
    try:
        meta = cluster.admin().list_topics(timeout=10)
    except KafkaException as exc:  # a broker restarting: ask again
        return [f"metadata: {exc}"]
    return [
        f"{name}[{p.id}] isr={p.isrs}"
        for name, topic in meta.topics.items()
        if name.startswith(prefix)
        for p in topic.partitions.values()
        if len(p.isrs) < 3
    ]


def topic_layout(cluster: Cluster, settings: Settings) -> dict[str, tuple[int, str]]:
    """Replication factor and min.insync.replicas of our topics and the table changelog."""
    admin = cluster.admin()
    meta = admin.list_topics(timeout=10)
    names = [n for n in meta.topics if n.startswith(settings.topic_prefix)]
    names += [n for n in meta.topics if n.startswith(f"{settings.worker_id}-profiles")]
    configs = admin.describe_configs([ConfigResource("topic", n) for n in names])
    out = {}
    for resource, future in configs.items():
        replicas = {len(p.replicas) for p in meta.topics[resource.name].partitions.values()}
        out[resource.name] = (max(replicas), future.result()["min.insync.replicas"].value)
    return out


# Known open defect (issue 16): in a clean-clone CI run the worker that owned
# `events` partition 0 stopped consuming it after the SIGKILLed broker (the group
# coordinator) came back: 590 records of lag for 300 s, so profiles held 5,376 of 5,381
# acknowledged events, while the collector side held (nothing acknowledged lost in Kafka).
# Two earlier runs passed. Not strict, so it keeps running and reports XPASS when it holds.
@pytest.mark.xfail(
    strict=False,
    reason="after a broker restart a worker can stop consuming a partition (faust/aiokafka)",
)
def test_broker_sigkill_under_load_loses_and_doubles_nothing(kafka_cluster: Cluster) -> None:
    cluster = kafka_cluster
    prefix = f"it{uuid.uuid4().hex[:8]}."
    group = f"w{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap=cluster.bootstrap,
        topic_prefix=prefix,
        redis_prefix=prefix,
        worker_id=group,
        topic_partitions=6,
        topic_replication=3,
        topic_min_insync=2,
    )
    wait_ready(settings, timeout=180)  # all three brokers registered
    ensure_topics(settings)
    env = {
        "CRM_KAFKA_BOOTSTRAP": cluster.bootstrap,
        "CRM_TOPIC_PREFIX": prefix,
        "CRM_REDIS_PREFIX": prefix,
        "CRM_WORKER_ID": group,
        "CRM_TOPIC_PARTITIONS": "6",
        "CRM_TOPIC_REPLICATION": "3",
        "CRM_TOPIC_MIN_INSYNC": "2",
        "CRM_ACK_TIMEOUT_MS": "3000",
    }
    port = free_port()
    # Not under tmp_path: concurrent pytest runs prune each other's old base temp dirs.
    logs = Path(TEST_ENV["CRM_DATA_DIR"]) / "logs" / group
    logs.mkdir(parents=True)
    with (
        http_service("collector", port, logs / "collector.log", env),
        crm_process(["worker", "--name", "a"], None, logs / "a.log", env=env) as wa,
        crm_process(["worker", "--name", "b"], None, logs / "b.log", env=env) as wb,
    ):
        load = Load(f"http://127.0.0.1:{port}", TEST_ENV["CRM_WRITE_KEYS"])
        load.start()
        try:
            # Both workers in the group and profiles being written before the crash.
            wait_for(
                lambda: group_members(cluster.admin(), group),
                lambda m: m is not None and len(m) == 2,
                timeout=180,
                what="two workers in the group",
            )
            wait_for(lambda: load.requests, lambda n: n >= 40, what="40 acknowledged requests")
            victim = coordinator_of(cluster, group)
            cluster.run("kill", str(victim))
            at_kill = load.requests
            # Two of three replicas are in sync: the collector acknowledges again.
            wait_for(
                lambda: load.requests,
                lambda n: n >= at_kill + 40,
                timeout=180,
                what="40 requests acknowledged with a broker down",
            )
            cluster.run("start", str(victim))
            wait_until(
                lambda: (not (u := under_replicated(cluster, prefix)), u),
                timeout=240,
                what="the restarted broker back in every in-sync replica set",
            )
            at_back = load.requests
            wait_for(lambda: load.requests, lambda n: n >= at_back + 40, what="40 more requests")
        finally:
            load.stop()
        wait_settled(settings, prefix, load.accepted, group, 300)
        # Neither worker died of the broker's loss.
        assert wa.poll() is None and wb.poll() is None, (wa.returncode, wb.returncode)

    print(
        f"killed broker {victim}; answers {dict(load.statuses)}; {load.requests} requests, "
        f"{load.retried} retried; {load.accepted} events acknowledged"
    )
    assert not load.problems, load.problems[:5]
    assert set(load.statuses) <= {"200", "503"}
    # Every acknowledged event is stored once or more (a 503'd attempt may have been
    # stored before its retry); the distinct ids are exactly the acknowledged events.
    decoder = msgspec.json.Decoder(Event)
    ids: Counter[str | None] = Counter()
    for msg in read_range(settings, settings.topic("events")):
        ids[decoder.decode(msg.value()).message_id] += 1
    assert None not in ids
    print(f"crm.events: {sum(ids.values())} records, {len(ids)} distinct event ids")
    assert len(ids) == load.accepted
    # Counted once downstream, and every profile as a single clean pass makes it.
    assert_matches_reference(settings, prefix, load.accepted)
    layout = topic_layout(cluster, settings)
    assert {name: layout.get(name) for name in (settings.topic(t.logical) for t in TOPICS)} == {
        settings.topic(t.logical): (3, "2") for t in TOPICS
    }
    changelogs = [n for n in layout if n.startswith(f"{group}-profiles")]
    assert changelogs and all(layout[n] == (3, "2") for n in changelogs), layout
