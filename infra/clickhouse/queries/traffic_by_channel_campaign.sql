-- Traffic and conversion by day, channel and campaign (last 30 days).
SELECT day, channel, campaign, sum(events) AS events, uniqExactMerge(customers) AS customers,
       uniqExactMerge(visitors) AS visitors, sum(conversions) AS conversions, sum(revenue) AS revenue,
       round(sum(conversions) / greatest(uniqExactMerge(customers), 1), 4) AS conversion_rate
FROM daily_channel_campaign
WHERE day >= today() - 30
GROUP BY day, channel, campaign
ORDER BY day DESC, events DESC
