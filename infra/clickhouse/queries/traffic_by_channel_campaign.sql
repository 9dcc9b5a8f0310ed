-- Traffic and conversion by day, channel and campaign (last 30 days).
SELECT day, channel, campaign, sum(events) AS event_count, uniqExactMerge(customers) AS unique_customers,
       uniqExactMerge(visitors) AS unique_visitors, sum(conversions) AS conversion_count, sum(revenue) AS total_revenue,
       round(conversion_count / greatest(unique_customers, 1), 4) AS conversion_rate
FROM daily_channel_campaign
WHERE day >= today() - 30
GROUP BY day, channel, campaign
ORDER BY day DESC, event_count DESC
