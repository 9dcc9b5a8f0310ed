-- Audience transitions from the <prefix>segments.changes topic: segment entries and exits,
-- loyalty ladder stage and tier changes. A transition re-sent after a worker crash has the
-- same change_id and collapses here (query with FINAL, or count distinct change_id).
CREATE TABLE IF NOT EXISTS segment_changes
(
    change_id String,
    customer_id String,
    kind LowCardinality(String),
    name LowCardinality(String),
    action LowCardinality(String),
    previous String,
    version UInt64,
    at DateTime64(3, 'UTC'),
    reason String,
    kafka_partition UInt16,
    kafka_offset UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (kind, name, customer_id, change_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Current members of every segment, from the history (the live sets are in Redis).
CREATE VIEW IF NOT EXISTS segment_members AS
SELECT name AS segment, customer_id, max(at) AS since
FROM segment_changes FINAL
WHERE kind = 'segment'
GROUP BY name, customer_id
HAVING argMax(action, (version, at)) = 'enter';

ALTER TABLE profile_snapshots ADD COLUMN IF NOT EXISTS loyalty_tier LowCardinality(String) DEFAULT '';
ALTER TABLE profile_snapshots ADD COLUMN IF NOT EXISTS segments Array(String) DEFAULT [];
