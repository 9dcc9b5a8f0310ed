-- Latest profile summary per customer; ReplacingMergeTree(version) keeps the newest
-- version of each customer (query with FINAL for exact latest values).
CREATE TABLE IF NOT EXISTS profile_snapshots
(
    customer_id String,
    version UInt64,
    updated_at DateTime64(3, 'UTC'),
    first_seen Nullable(DateTime64(3, 'UTC')),
    last_seen Nullable(DateTime64(3, 'UTC')),
    events UInt64,
    orders UInt64,
    revenue Decimal(18, 2),
    last_purchase Nullable(DateTime64(3, 'UTC')),
    email_opens UInt64,
    complaints UInt64,
    points_balance Int64,
    churn_risk Nullable(Float64),
    lifetime_value Nullable(Float64),
    segment String,
    loyalty_stage LowCardinality(String),
    merged_into String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY customer_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Identity merges (absorbed -> survivor) from the merge log, to resolve old customer
-- ids in `events` to today's customer (see the events_resolved view).
CREATE TABLE IF NOT EXISTS customer_merges
(
    absorbed String,
    survivor String,
    merged_at DateTime64(3, 'UTC'),
    event_id String
)
ENGINE = ReplacingMergeTree(merged_at)
ORDER BY absorbed
SETTINGS non_replicated_deduplication_window = 10000;

CREATE VIEW IF NOT EXISTS events_resolved AS
SELECT e.*, if(m.survivor = '', e.customer_id, m.survivor) AS resolved_customer_id
FROM events AS e
LEFT JOIN (SELECT absorbed, argMax(survivor, merged_at) AS survivor FROM customer_merges GROUP BY absorbed) AS m
    ON e.customer_id = m.absorbed;
