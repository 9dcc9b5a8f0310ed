-- Revenue by store (web orders under 'web') and category, last 30 days.
SELECT store_id, category, uniqExactMerge(transactions) AS transactions, sum(units) AS units,
       sum(revenue) AS revenue, uniqExactMerge(customers) AS customers
FROM daily_store_category
WHERE day >= today() - 30
GROUP BY store_id, category
ORDER BY revenue DESC
