"""All settings, read from environment variables with the ``CRM_`` prefix.

One place so the README table, ``crm status`` and every component agree on the
same names and defaults. Defaults run everything on loopback with data under
``./.crm-data``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the pipeline; see the configuration table in README.md."""

    model_config = SettingsConfigDict(
        env_prefix="CRM_", extra="ignore", env_file=".env", env_file_encoding="utf-8"
    )

    data_dir: Path = Field(
        default=REPO_ROOT / ".crm-data", description="Where all local state lives"
    )
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_rejoin_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Sinks replace a consumer out of its group this long while the broker answers",
    )
    topic_prefix: str = Field(default="crm.", description="Prefix of every topic name")
    topic_partitions: int = Field(default=6, ge=1, description="Partitions of created topics")
    topic_replication: int = Field(
        default=1,
        ge=1,
        description="Replication factor of created topics, Faust's changelogs too (3 on a cluster)",
    )
    topic_min_insync: int = Field(
        default=1,
        ge=1,
        description="min.insync.replicas of created topics: replicas an acks=all write needs",
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL")
    redis_cluster: bool = Field(
        default=False, description="CRM_REDIS_URL names a node of a Redis Cluster"
    )
    redis_prefix: str = Field(default="crm:", description="Prefix of every Redis key")
    identity_rules: Path = Field(
        default=REPO_ROOT / "config" / "identity_rules.yaml", description="Identity rules file"
    )
    loyalty_rules: Path = Field(
        default=REPO_ROOT / "config" / "loyalty.yaml",
        description="Loyalty points, tiers and ladder criteria",
    )
    segments_rules: Path = Field(
        default=REPO_ROOT / "config" / "segments.yaml", description="Segment definitions"
    )
    personalization_rules: Path = Field(
        default=REPO_ROOT / "config" / "personalization.yaml",
        description="Personalization slots and rules (hot-reloaded by the API)",
    )
    segment_tick_s: float = Field(
        default=1.0, gt=0, description="Seconds between sweeps for due segment timers"
    )
    rules_reload_s: float = Field(
        default=2.0, gt=0, description="Seconds between checks of the personalization rules file"
    )
    worker_id: str = Field(default="crm", description="Faust application id (consumer group)")
    worker_name: str = Field(default="w1", description="This worker's name (its local state dir)")
    metrics_port: int = Field(
        default=0, description="Prometheus port of a worker or sink process (0: off)"
    )
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics")
    worker_batch: int = Field(default=5000, ge=1, description="Events per worker batch")
    worker_cache: int = Field(
        default=10_000, ge=0, description="Decoded profiles a worker keeps between batches"
    )
    worker_intake: int = Field(
        default=20_000, ge=1, description="Records buffered per input topic before fetching pauses"
    )
    dedupe_window_s: int = Field(
        default=86_400,
        ge=60,
        description="Seconds the identity stage remembers where an event id went (a copy inside"
        " it is tagged repeat, which the ClickHouse sink skips; markers live up to 5/4 of it)",
    )
    dedupe_rate: int = Field(
        default=1000,
        ge=1,
        description="Events/s the event-id marker hashes are sized for (about 64 per hash)",
    )
    churn_min_labels: int = Field(
        default=500,
        ge=0,
        description="Churn labels a worker's model learns before its risk replaces the prior",
    )
    model_refit_every: int = Field(
        default=2000, ge=10, description="Purchases between lifetime-value refits of a worker"
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Allocations between young garbage collections in the worker and sinks "
        "(0: Python's default of 700); start-up objects are frozen out of collection",
    )
    model_refit_min_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds at least between two lifetime-value fits of a worker (on a thread)",
    )
    model_checkpoint_s: float = Field(
        default=60.0, gt=0, description="Seconds between model checkpoints of a worker"
    )
    table_store: str = Field(
        default="rocksdb://", description="Faust table store (rocksdb:// or memory://)"
    )
    table_cache_mb: int = Field(
        default=32,
        ge=1,
        description="RocksDB block cache per table partition, MB (Faust's default is 2 GB each)",
    )
    table_write_buffer_mb: int = Field(
        default=16, ge=1, description="RocksDB write buffer per table partition, MB (two kept)"
    )
    api_host: str = Field(
        default="127.0.0.1", description="Profile/personalization API bind address"
    )
    api_port: int = Field(default=8090, description="Profile/personalization API port")
    api_workers: int = Field(
        default=1, ge=1, description="API processes sharing the port (one per core)"
    )
    api_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request body the API reads (a preference update is ~200 bytes)",
    )
    clickhouse_url: str = Field(
        default="", description="chdb:///path (embedded) or http://host:8123 (server)"
    )
    clickhouse_batch: int = Field(default=10_000, ge=1, description="Rows per ClickHouse insert")
    clickhouse_batch_ms: int = Field(
        default=1000, ge=10, description="Longest wait to fill a batch"
    )
    sql_port: int = Field(
        default=8124,
        description="Port of the ClickHouse HTTP endpoint the process owning chdb serves",
    )
    sql_host: str = Field(
        default="127.0.0.1",
        description="Bind address of that endpoint (0.0.0.0: BI tools on other hosts)",
    )
    sql_users: SecretStr = Field(
        default=SecretStr(""),
        description="Users of that endpoint, user:password,user2:password2 (HTTP Basic)",
    )
    sql_loopback_trust: bool = Field(
        default=True,
        description="Loopback clients may query that endpoint without credentials",
    )
    sql_max_execution_s: int = Field(
        default=60, ge=1, description="max_execution_time of a query on that endpoint"
    )
    sql_max_result_rows: int = Field(
        default=1_000_000, ge=1, description="max_result_rows of a query on that endpoint"
    )
    sql_max_memory_mb: int = Field(
        default=2048, ge=64, description="max_memory_usage of a query on that endpoint, MB"
    )
    collector_host: str = Field(default="127.0.0.1", description="Collector bind address")
    collector_port: int = Field(default=8080, description="Collector port")
    write_keys: str = Field(
        default="dev-write-key", description="Comma-separated write keys accepted by the collector"
    )
    read_keys: str = Field(
        default="dev-read-key", description="Comma-separated read keys for the lookup APIs"
    )
    customer_token_secret: str = Field(
        default="",
        description="HMAC secret of customer tokens (X-Customer-Token): with one, a browser"
        " holding the write key may change that customer's preferences; empty: read keys only",
    )
    rate_limit_per_key: float = Field(
        default=0.0,
        ge=0,
        description="Requests/s each write key may send to one collector process (0: no limit);"
        " past it and its burst, 429 with Retry-After",
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds the collector and the API wait for a whole request body (408)",
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Requests a write key may send at once above its rate"
    )
    max_event_bytes: int = Field(default=32 * 1024, description="Largest accepted single event")
    max_batch_bytes: int = Field(default=512 * 1024, description="Largest accepted request body")
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Largest request line plus headers the collector and the API read (431)",
    )
    event_max_age_days: int = Field(
        default=3650, ge=1, description="Oldest event time accepted, in days before receipt"
    )
    event_max_ahead_s: int = Field(
        default=86400, ge=0, description="Newest event time accepted, in seconds after receipt"
    )
    ack_timeout_ms: int = Field(
        default=5000, description="How long the collector waits for Kafka before answering 503"
    )
    hash_pii: bool = Field(default=True, description="Hash emails and phones before Kafka")
    pii_salt: SecretStr = Field(default=SecretStr(""), description="Salt mixed into PII hashes")
    cors_origins: str = Field(default="*", description="Comma-separated allowed CORS origins")
    snippet_path: Path = Field(
        default=REPO_ROOT / "web" / "dist" / "crm.js",
        description="The built tracking snippet served at /v1/crm.js (make setup builds it)",
    )
    cdn_path: str = Field(
        default="",
        description="Path prefix of a second analytics.js settings route (cdnURL: collector + it)",
    )
    ip_capture: Literal["full", "truncated", "off"] = Field(
        default="full",
        description="context.ip from the request: as is, with the host part zeroed, or not at all",
    )
    trusted_ip_header: str = Field(
        default="",
        description="Header a trusted proxy sets with the client address (X-Forwarded-For)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = Field(default="console")

    @model_validator(mode="after")
    def _insync_within_replication(self) -> Settings:
        if self.topic_min_insync > self.topic_replication:
            raise ValueError(
                f"CRM_TOPIC_MIN_INSYNC ({self.topic_min_insync}) exceeds CRM_TOPIC_REPLICATION "
                f"({self.topic_replication}): no acks=all write could ever succeed"
            )
        return self

    @property
    def clickhouse_dsn(self) -> str:
        """The configured DSN, or the embedded chdb store under the data directory."""
        return self.clickhouse_url or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def write_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.write_keys.split(",") if k.strip())

    @property
    def read_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.read_keys.split(",") if k.strip())

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic (``events``, ``events.dlq``...)."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
