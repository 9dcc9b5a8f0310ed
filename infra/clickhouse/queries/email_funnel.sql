-- Email funnel per campaign: counts and unique customers who opened / clicked.
SELECT campaign,
       sum(sent) AS sent_count, sum(delivered) AS delivered_count, sum(opened) AS open_count,
       uniqExactIfMerge(unique_opened) AS customers_opened, sum(clicked) AS click_count,
       uniqExactIfMerge(unique_clicked) AS customers_clicked, sum(bounced) AS bounce_count,
       sum(unsubscribed) AS unsubscribe_count, sum(complained) AS complaint_count,
       round(customers_opened / greatest(delivered_count, 1), 4) AS open_rate
FROM daily_email_campaign
GROUP BY campaign
ORDER BY sent_count DESC
