"""Prometheus metrics shared by every component (one registry, one naming scheme)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("crm_events_in_total", "Events received", ["source"])
EVENTS_OUT = Counter("crm_events_out_total", "Events written", ["sink"])
DEAD_LETTERED = Counter("crm_events_dead_lettered_total", "Events dead-lettered", ["error_type"])
REQUESTS = Counter("crm_http_requests_total", "HTTP requests", ["route", "status"])
REQUEST_SECONDS = Histogram(
    "crm_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RETRIES = Counter(
    "crm_retries_total", "Steps retried after a dependency failed (Redis down)", ["step"]
)
SINK_SECONDS = Histogram("crm_sink_flush_seconds", "Sink flush latency", ["sink"])
CONSUMER_LAG = Gauge(
    "crm_consumer_lag", "Records behind the end of the topic", ["topic", "partition"]
)
MODEL_METRIC = Gauge(
    "crm_model_metric", "Prequential model quality (rolling AUC, log loss, drift alarms)", ["name"]
)
SEGMENT_CHANGES = Counter(
    "crm_audience_changes_total", "Segment entries/exits and ladder/tier changes emitted"
)
RULES_RELOADS = Counter(
    "crm_rules_reloads_total", "Rule file reloads by the API", ["file", "outcome"]
)
