-- Rejected events by source, error type and reason.
SELECT source, error_type, substring(reason, 1, 80) AS reason, count() AS events, max(received_at) AS last_seen
FROM failed_events
GROUP BY source, error_type, reason
ORDER BY events DESC
LIMIT 20
