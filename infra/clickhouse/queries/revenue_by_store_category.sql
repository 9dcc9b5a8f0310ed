-- Revenue by store (web orders under 'web') and category, last 30 days.
SELECT store_id, category, uniqExactMerge(transactions) AS transaction_count, sum(units) AS units_sold,
       sum(revenue) AS total_revenue, uniqExactMerge(customers) AS customer_count
FROM daily_store_category
WHERE day >= today() - 30
GROUP BY store_id, category
ORDER BY total_revenue DESC
