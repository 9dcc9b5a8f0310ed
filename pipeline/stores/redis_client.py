"""Redis clients from settings: one server, or a Redis Cluster (``CRM_REDIS_CLUSTER``).

Every component gets its clients here, so switching to a cluster is one setting: the
key layout (``pipeline.wire.keys``) keeps each script and transaction in one slot, and
the cluster clients route each command to the node that owns its slot.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis

from pipeline.config import Settings


def sync_redis(settings: Settings, **kwargs: Any) -> redis.Redis:
    if settings.redis_cluster:
        return cast(redis.Redis, redis.RedisCluster.from_url(settings.redis_url, **kwargs))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def async_redis(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    if settings.redis_cluster:
        return cast(aioredis.Redis, aioredis.RedisCluster.from_url(settings.redis_url, **kwargs))
    return aioredis.from_url(settings.redis_url, **kwargs)


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster | aioredis.RedisCluster)
