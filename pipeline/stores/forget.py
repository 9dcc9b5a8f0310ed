"""Forgetting a customer: identity keys and event assignments in Redis, then the profile.

The CLI removes the identity graph entries itself (so no new event can reach
the old customer), then sends a Forget record through ``events.by_customer`` so
the partition owner deletes the profile from its table and from Redis in order
with everything else it processes for that customer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.stores.identity_redis import SEP
from pipeline.worker.records import Forget, encoder


def forget_customer(settings: Settings, customer_id: str) -> list[str]:
    """Erase one customer (and customers merged into it); return the identifiers removed."""
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    p = settings.redis_prefix
    absorbed = [
        str(k).split(":")[-2]
        for k in r.scan_iter(f"{p}cust:*:merged_into", count=1000)
        if r.get(k) == customer_id
    ]
    removed: list[str] = []
    pipe = r.pipeline(transaction=True)
    for raw in r.smembers(f"{p}cust:{customer_id}:ids"):
        kind, _, value = str(raw).partition(SEP)
        pipe.delete(f"{p}id:{kind}:{value}")
        removed.append(f"{kind}:{value}")
    pipe.delete(f"{p}cust:{customer_id}:ids", f"{p}profile:{customer_id}")
    for cid in absorbed:
        pipe.delete(f"{p}cust:{cid}:merged_into", f"{p}profile:{cid}")
    pipe.execute()
    producer = ConfirmedProducer(settings.kafka_bootstrap)
    now = datetime.now(UTC).isoformat()
    topic = settings.topic("events.by_customer")
    producer.send_sync(
        [
            Record(topic, cid.encode(), encoder.encode(Forget(customer_id=cid, requested_at=now)))
            for cid in [customer_id, *absorbed]
        ]
    )
    producer.close()
    return removed
