-- Web sessions per day (30 minutes of inactivity closes a session), from raw events.
SELECT day, count() AS sessions, uniqExact(anonymous_id) AS visitors
FROM
(
    SELECT anonymous_id, toDate(event_time) AS day,
           event_time - lagInFrame(event_time, 1, toDateTime64(0, 3, 'UTC'))
               OVER (PARTITION BY anonymous_id ORDER BY event_time) AS gap
    FROM events FINAL
    WHERE channel = 'web' AND anonymous_id != ''
)
WHERE gap > 1800
GROUP BY day
ORDER BY day DESC
