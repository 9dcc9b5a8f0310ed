"""Forgetting a customer: identity keys and event assignments in Redis, then the profile.

The CLI removes the identity graph entries itself (so no new event can reach
the old customer), then sends a Forget record through ``events.by_customer`` so
the partition owner deletes the profile from its table and from Redis in order
with everything else it processes for that customer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.sinks.redis_profiles import WRITE_IF_NEWER, write_args
from pipeline.stores.redis_client import sync_redis
from pipeline.transforms.identifiers import canonical
from pipeline.transforms.profile import Profile
from pipeline.wire.keys import FORGOTTEN, SEP, RedisKeys
from pipeline.wire.records import Forget, encoder

# KEYS: graph keys to delete (ARGV[1] of them), then erasure markers to set to ARGV[2].
ERASE = """
local n = tonumber(ARGV[1])
for i = 1, #KEYS do
  if i <= n then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], ARGV[2]) end
end
return #KEYS
"""


def owner_of(settings: Settings, identifier: str) -> str | None:
    """The customer an identifier (``type:value``, as sent) belongs to, or None."""
    kind, _, value = identifier.partition(":")
    value = canonical(
        kind, value, salt=settings.pii_salt.get_secret_value(), hash_pii=settings.hash_pii
    )
    r = sync_redis(settings, decode_responses=True)
    owner = r.get(RedisKeys(settings.redis_prefix).identifier(kind, value))
    return str(owner) if owner else None


def forget_customer(settings: Settings, customer_id: str) -> list[str]:
    """Erase one customer (and customers merged into it); return the identifiers removed."""
    r = sync_redis(settings, decode_responses=True)
    p = settings.redis_prefix
    keys = RedisKeys(p)
    absorbed = [
        keys.customer_of_merged(str(k))
        for k in r.scan_iter(keys.all_merged(), count=1000)
        if r.get(k) == customer_id
    ]
    removed: list[str] = []
    graph: list[str] = []  # keys of the identity graph to delete (all in its one slot)
    for raw in r.smembers(keys.members(customer_id)):
        kind, _, value = str(raw).partition(SEP)
        graph.append(keys.identifier(kind, value))
        removed.append(f"{kind}:{value}")
    graph.append(keys.members(customer_id))
    now = datetime.now(UTC).isoformat()
    everyone = [customer_id, *absorbed]
    graph += [keys.merged_into(cid) for cid in everyone]
    # One atomic change of the graph (a new customer from these identifiers gets a new id),
    # then each profile becomes an erasure tombstone through the sink's own guarded script:
    # lookups stop, the customer leaves its segment sets, and no late write from a worker
    # (or the Forget record's own, later) can bring the profile back. Re-running forget
    # after a crash between the two finishes the job.
    erased = [keys.erased(cid) for cid in everyone]
    r.register_script(ERASE)(keys=graph + erased, args=[len(graph), now])
    write = r.register_script(WRITE_IF_NEWER)
    for cid in everyone:
        tomb_keys, args = write_args(p, Profile(customer_id=cid, merged_into=FORGOTTEN), now)
        write(keys=tomb_keys, args=args)
    producer = ConfirmedProducer(settings.kafka_bootstrap)
    topic = settings.topic("events.by_customer")
    producer.send_sync(
        [
            Record(topic, cid.encode(), encoder.encode(Forget(customer_id=cid, requested_at=now)))
            for cid in [customer_id, *absorbed]
        ]
    )
    producer.close()
    return removed
