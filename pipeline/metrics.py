"""Prometheus metrics shared by every component (one registry, one naming scheme)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

EVENTS_IN = Counter("crm_events_in_total", "Events received", ["source"])
EVENTS_OUT = Counter("crm_events_out_total", "Events or rows written", ["sink", "table"])
DEAD_LETTERED = Counter("crm_events_dead_lettered_total", "Events dead-lettered", ["error_type"])
REQUESTS = Counter("crm_http_requests_total", "HTTP requests", ["route", "status"])
REQUEST_SECONDS = Histogram(
    "crm_http_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RETRIES = Counter(
    "crm_retries_total", "Steps retried after a dependency failed (Redis down)", ["step"]
)
DEPENDENCY_UP = Gauge(
    "crm_dependency_up",
    "1 while a process reaches a dependency, 0 while it waits for it to come back",
    ["process", "dependency"],
)
SINK_SECONDS = Histogram(
    "crm_sink_flush_duration_seconds",
    "Time to write one batch to the sink's store",
    ["sink"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "crm_consumer_lag",
    "Records between the group's committed offset and the end of the partition",
    ["group", "topic", "partition"],
    multiprocess_mode="max",
)
MODEL_METRIC = Gauge(
    "crm_model_metric",
    "Prequential model quality (rolling AUC, log loss, drift alarms)",
    ["name"],
    multiprocess_mode="max",
)
SEGMENT_CHANGES = Counter(
    "crm_audience_changes_total", "Segment entries/exits and ladder/tier changes emitted"
)
RULES_RELOADS = Counter(
    "crm_rules_reloads_total", "Rule file reloads by the API", ["file", "outcome"]
)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose this process's metrics on ``http://host:port/metrics`` (0: do not serve)."""
    if port:
        start_http_server(port, addr=host)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def prepare_multiprocess(directory: Path) -> None:
    """Before forking N server processes: each writes its metrics under ``directory``.

    Must run before the children import prometheus_client; a scrape of any of them
    then answers for all (see :func:`exposition`).
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def exposition() -> bytes:
    """The text a scrape of /metrics answers: this process, or every sibling process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return bytes(generate_latest(registry))
    return bytes(generate_latest())
