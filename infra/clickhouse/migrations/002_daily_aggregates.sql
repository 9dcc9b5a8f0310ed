-- Daily aggregates kept by materialized views as inserts arrive.
-- AggregatingMergeTree stores partial states (sums, exact unique sets) that merge
-- correctly whatever the insert order; read them with -Merge / sum() GROUP BY.
-- Inserts use deduplicate_blocks_in_dependent_materialized_views so a retried
-- block is dropped here too, not only in `events`.

CREATE TABLE IF NOT EXISTS daily_channel_campaign
(
    day Date,
    channel LowCardinality(String),
    campaign String,
    events SimpleAggregateFunction(sum, UInt64),
    customers AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, String),
    conversions SimpleAggregateFunction(sum, UInt64),
    revenue SimpleAggregateFunction(sum, Decimal(38, 2))
)
ENGINE = AggregatingMergeTree
ORDER BY (day, channel, campaign)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_channel_campaign_mv TO daily_channel_campaign AS
SELECT
    toDate(event_time) AS day,
    channel,
    campaign,
    toUInt64(count()) AS events,
    uniqExactState(customer_id) AS customers,
    uniqExactState(anonymous_id) AS visitors,
    toUInt64(countIf(type = 'pos_transaction' OR name = 'Order Completed')) AS conversions,
    toDecimal128(sum(revenue), 2) AS revenue
FROM events
GROUP BY day, channel, campaign;

CREATE TABLE IF NOT EXISTS daily_store_category
(
    day Date,
    store_id String,
    category String,
    transactions AggregateFunction(uniqExact, String),
    customers AggregateFunction(uniqExact, String),
    units SimpleAggregateFunction(sum, UInt64),
    revenue SimpleAggregateFunction(sum, Decimal(38, 2))
)
ENGINE = AggregatingMergeTree
ORDER BY (day, store_id, category)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_store_category_mv TO daily_store_category AS
SELECT
    toDate(event_time) AS day,
    if(store_id = '', 'web', store_id) AS store_id,
    if(items.category = '', '(none)', items.category) AS category,
    uniqExactState(event_id) AS transactions,
    uniqExactState(customer_id) AS customers,
    toUInt64(sum(items.quantity)) AS units,
    toDecimal128(sum(items.price * items.quantity), 2) AS revenue
FROM events
ARRAY JOIN items
WHERE type = 'pos_transaction' OR name = 'Order Completed'
GROUP BY day, store_id, category;

CREATE TABLE IF NOT EXISTS daily_email_campaign
(
    day Date,
    campaign String,
    sent SimpleAggregateFunction(sum, UInt64),
    delivered SimpleAggregateFunction(sum, UInt64),
    opened SimpleAggregateFunction(sum, UInt64),
    clicked SimpleAggregateFunction(sum, UInt64),
    bounced SimpleAggregateFunction(sum, UInt64),
    unsubscribed SimpleAggregateFunction(sum, UInt64),
    complained SimpleAggregateFunction(sum, UInt64),
    unique_opened AggregateFunction(uniqExactIf, String, UInt8),
    unique_clicked AggregateFunction(uniqExactIf, String, UInt8)
)
ENGINE = AggregatingMergeTree
ORDER BY (day, campaign)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_email_campaign_mv TO daily_email_campaign AS
SELECT
    toDate(event_time) AS day,
    campaign,
    toUInt64(countIf(name = 'sent')) AS sent,
    toUInt64(countIf(name = 'delivered')) AS delivered,
    toUInt64(countIf(name = 'open')) AS opened,
    toUInt64(countIf(name = 'click')) AS clicked,
    toUInt64(countIf(name = 'bounce')) AS bounced,
    toUInt64(countIf(name = 'unsubscribe')) AS unsubscribed,
    toUInt64(countIf(name = 'spam_complaint')) AS complained,
    uniqExactIfState(customer_id, toUInt8(name = 'open')) AS unique_opened,
    uniqExactIfState(customer_id, toUInt8(name = 'click')) AS unique_clicked
FROM events
WHERE type = 'email'
GROUP BY day, campaign;
