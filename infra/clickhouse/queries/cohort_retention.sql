-- Monthly cohort retention: customers by month of first purchase, active in later months.
WITH purchases AS (
    SELECT resolved_customer_id AS customer, toStartOfMonth(event_time) AS month
    FROM events_resolved
    WHERE type = 'pos_transaction' OR name = 'Order Completed'
),
firsts AS (SELECT customer, min(month) AS cohort FROM purchases GROUP BY customer)
SELECT f.cohort, dateDiff('month', f.cohort, p.month) AS months_after, uniqExact(p.customer) AS customers
FROM purchases AS p INNER JOIN firsts AS f USING (customer)
GROUP BY f.cohort, months_after
ORDER BY f.cohort, months_after
