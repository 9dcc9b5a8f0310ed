-- Distribution of churn risk and lifetime value over current customers.
SELECT multiIf(churn_risk IS NULL, 'unscored', churn_risk < 0.2, '0.0-0.2', churn_risk < 0.5, '0.2-0.5',
               churn_risk < 0.8, '0.5-0.8', '0.8-1.0') AS churn_band,
       count() AS customers, round(avg(lifetime_value), 2) AS avg_lifetime_value,
       round(avg(toFloat64(revenue)), 2) AS avg_revenue
FROM profile_snapshots FINAL
WHERE merged_into = ''
GROUP BY churn_band
ORDER BY churn_band
