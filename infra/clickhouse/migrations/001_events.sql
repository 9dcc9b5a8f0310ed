-- Every valid, enriched event with the customer it was resolved to.
-- ReplacingMergeTree keyed by (customer_id, event_time, event_id): a duplicate of an
-- event (a client retry after a 503 that was partly stored) collapses on merge and
-- with FINAL. Sink retries never create duplicates in the first place: inserts carry a
-- deduplication token per (topic, partition, offset range), honoured on non-replicated
-- tables through non_replicated_deduplication_window.
-- Partitioned by month of event time; ordered for per-customer queries, with a
-- minmax index for time-range queries.
CREATE TABLE IF NOT EXISTS events
(
    event_id String,
    customer_id String,
    type LowCardinality(String),
    name LowCardinality(String),
    channel LowCardinality(String),
    source LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    anonymous_id String,
    user_id String,
    campaign String,
    store_id String,
    order_id String,
    revenue Decimal(18, 2),
    items Nested(sku String, category String, brand String, quantity UInt32, price Decimal(18, 2)),
    properties String,
    context String,
    replayed UInt8,
    kafka_partition UInt16,
    kafka_offset UInt64,
    INDEX idx_event_time event_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (customer_id, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Every dead-lettered event, readable columns extracted where the original parses.
-- Plain MergeTree: rows are distinct by (partition, offset); the token stops retries.
CREATE TABLE IF NOT EXISTS failed_events
(
    received_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    error_type LowCardinality(String),
    reason String,
    batch_index Nullable(UInt32),
    type LowCardinality(String),
    event_id String,
    anonymous_id String,
    user_id String,
    original String,
    kafka_partition UInt16,
    kafka_offset UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, kafka_partition, kafka_offset)
SETTINGS non_replicated_deduplication_window = 10000;
