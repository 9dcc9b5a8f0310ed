"""What an operator scrapes: consumer lag and sink throughput from a sink process, and one
answer for all processes of `crm api --workers N`."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from confluent_kafka import Consumer, Producer

from pipeline.cli.processes import crm_process
from pipeline.config import Settings
from pipeline.kafka.lag import group_lag
from tests.integration.conftest import free_port, wait_for

READ = {"Authorization": "Bearer it-read-key"}


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels matched as a subset)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _produce(settings: Settings, n: int) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(n):
        event = {
            "type": "track",
            "messageId": f"m-{uuid.uuid4().hex}",
            "anonymousId": f"a{i % 7}",
            "event": "Product Viewed",
            "timestamp": "2026-11-24T10:00:00Z",
            "receivedAt": "2026-11-24T10:00:00Z",
        }
        import msgspec

        producer.produce(settings.topic("events"), msgspec.json.encode(event), key=str(i % 7))
    assert producer.flush(30) == 0


def test_group_lag_counts_from_the_start_until_the_group_commits(settings: Settings):
    _produce(settings, 12)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "nobody"})
    try:
        lag = group_lag(consumer, [settings.topic("events")])
    finally:
        consumer.close()
    assert sum(lag.values()) == 12 and len(lag) == settings.topic_partitions


def test_archive_sink_exports_its_lag_and_rows(settings: Settings, tmp_path: Path):
    _produce(settings, 25)
    port = free_port()
    env = {"CRM_TOPIC_PREFIX": settings.topic_prefix, "CRM_DATA_DIR": str(tmp_path / "data")}
    group = f"{settings.topic_prefix}crm-archive"
    with crm_process(
        ["sink", "archive", "--max-wait", "0.2", "--metrics-port", str(port)],
        None,
        tmp_path / "archive.log",
        env=env,
    ):

        def scrape() -> str:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.HTTPError:
                return ""

        def caught_up(text: str) -> bool:
            lags = [
                _sample(text, "crm_consumer_lag", group=group, partition=str(p))
                for p in range(settings.topic_partitions)
            ]
            written = _sample(text, "crm_events_out_total", sink="archive", table="events")
            return written == 25 and lags == [0.0] * settings.topic_partitions

        text = wait_for(scrape, caught_up, 60, "archive lag 0 and 25 rows out")
    assert _sample(text, "crm_sink_flush_duration_seconds_count", sink="archive")


def test_api_with_several_processes_answers_scrapes_for_all_of_them(
    settings: Settings, tmp_path: Path
):
    port = free_port()
    env = {
        "CRM_TOPIC_PREFIX": settings.topic_prefix,
        "CRM_REDIS_PREFIX": settings.topic_prefix,
        "CRM_DATA_DIR": str(tmp_path / "data"),
    }
    base = f"http://127.0.0.1:{port}"
    with crm_process(
        ["api", "--port", str(port), "--workers", "2"],
        f"{base}/health",
        tmp_path / "api.log",
        env=env,
    ):
        for _ in range(40):  # new connections: the kernel spreads them over both processes
            assert httpx.get(f"{base}/v1/profiles/nobody", headers=READ).status_code == 404
        for _ in range(5):  # whichever process answers the scrape, it counts all 40
            text = httpx.get(f"{base}/metrics").text
            assert (
                _sample(text, "crm_http_requests_total", route="/v1/profiles", status="404") == 40
            )
