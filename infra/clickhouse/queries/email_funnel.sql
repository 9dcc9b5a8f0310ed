-- Email funnel per campaign: counts and unique customers who opened / clicked.
SELECT campaign, sum(sent) AS sent, sum(delivered) AS delivered, sum(opened) AS opened,
       uniqExactIfMerge(unique_opened) AS unique_opened, sum(clicked) AS clicked,
       uniqExactIfMerge(unique_clicked) AS unique_clicked, sum(bounced) AS bounced,
       sum(unsubscribed) AS unsubscribed, sum(complained) AS complained,
       round(uniqExactIfMerge(unique_opened) / greatest(sum(delivered), 1), 4) AS open_rate
FROM daily_email_campaign
GROUP BY campaign
ORDER BY sent DESC
