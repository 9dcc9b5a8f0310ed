"""Redis clients from settings: one server, or a Redis Cluster (``CRM_REDIS_CLUSTER``).

Every component gets its clients here, so switching to a cluster is one setting: the
key layout (``pipeline.wire.keys``) keeps each script and transaction in one slot, and
the cluster clients route each command to the node that owns its slot.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

from pipeline.config import Settings


class HiredisPackingConnection(aioredis.Connection):
    """redis-py's asyncio connection packs commands in Python (about 5 µs per argument:
    29% of the identity stage, whose scripts take thousands of arguments), while its sync
    connection uses hiredis's C packer. This one packs with hiredis as the sync one does,
    so arguments are encoded exactly alike (str as UTF-8, numbers as their text)."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


def sync_redis(settings: Settings, **kwargs: Any) -> redis.Redis:
    if settings.redis_cluster:
        return cast(redis.Redis, redis.RedisCluster.from_url(settings.redis_url, **kwargs))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def async_redis(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    if settings.redis_cluster:
        return cast(aioredis.Redis, aioredis.RedisCluster.from_url(settings.redis_url, **kwargs))
    if HIREDIS_AVAILABLE:  # a rediss:// or unix:// URL still picks its own connection class
        kwargs.setdefault("connection_class", HiredisPackingConnection)
    return aioredis.from_url(settings.redis_url, **kwargs)


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster | aioredis.RedisCluster)
