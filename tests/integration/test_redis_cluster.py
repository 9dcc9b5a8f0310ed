"""The pipeline on a Redis Cluster of three masters (infra/redis-cluster.sh).

The same end-to-end and identity-graph tests as on one Redis, with every process
(collector, worker, API, `crm forget`) and the test's own clients in cluster mode:
the key layout (``pipeline.wire.keys``) must keep every script and transaction in one
slot, or the cluster refuses it (CROSSSLOT) and these tests fail.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from pipeline.config import REPO_ROOT, Settings
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.stores.redis_client import async_redis, sync_redis
from pipeline.stores.segments_redis import SegmentReader
from pipeline.transforms.identity import MemoryGraph
from pipeline.wire.keys import BUCKETS, RedisKeys
from tests.integration.test_identity_graph_contract import (
    RULES,
    memory_state,
    redis_state,
    resolve_in_batches,
)
from tests.integration.test_profiles_e2e import (  # noqa: F401  (run again, on the cluster)
    test_forget_by_identifier_erases_the_customer_everywhere_in_redis,
    test_one_customer_across_web_store_and_email,
    test_two_known_customers_merge_and_the_absorbed_id_resolves_to_the_survivor,
)
from tests.integration.test_redis_sink import (  # noqa: F401  (on the cluster)
    test_more_events_win_even_with_a_lower_version,
    test_tombstones_and_erasure_are_final,
)

pytestmark = pytest.mark.cluster
SCRIPT = str(REPO_ROOT / "infra" / "redis-cluster.sh")
PORTS = "17101 17102 17103"


@pytest.fixture(scope="module")
def redis_cluster(services: dict[str, str]) -> Iterator[str]:
    env = {**os.environ, "CRM_REDIS_CLUSTER_PORTS": PORTS}
    subprocess.run([SCRIPT, "stop"], env=env, check=False)
    subprocess.run([SCRIPT, "start"], env=env, check=True)
    yield f"redis://127.0.0.1:{PORTS.split()[0]}/0"
    subprocess.run([SCRIPT, "stop"], env=env, check=False)


@pytest.fixture
def redis_env(redis_cluster: str) -> dict[str, str]:
    return {"CRM_REDIS_URL": redis_cluster, "CRM_REDIS_CLUSTER": "true"}


def test_the_cluster_has_three_masters_and_profiles_spread_over_them(settings: Settings):
    r = sync_redis(settings)
    masters = {n for n, info in r.cluster_nodes().items() if "master" in info["flags"]}
    assert len(masters) == 3
    keys = RedisKeys(settings.redis_prefix)
    owners = {
        r.nodes_manager.get_node_from_slot(key_slot(keys.profile(f"c_{b}").encode())).name
        for b in BUCKETS
    }
    assert len(owners) == 3  # the 16 profile buckets are not all on one node


STREAMS = [
    [
        {"email": "e1", "anonymous_id": "ck1"},
        {"anonymous_id": "ck2", "user_id": "u1"},
        {"anonymous_id": "ck2", "email": "e1"},
        {"user_id": "u2", "email": "e1"},
    ],
    [
        {"user_id": "u1"},
        {"user_id": "u1", "loyalty_id": "L1"},
        {"loyalty_id": "L1", "email": "e2"},
        {"anonymous_id": "ck9", "email": "e2"},
        {"anonymous_id": "ck9", "user_id": "u3"},
    ],
]


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("size", [1, 3])
def test_identity_graph_on_the_cluster_ends_where_a_sequential_pass_ends(
    settings: Settings, stream: list[dict[str, str]], size: int
):
    async def run() -> None:
        r = async_redis(settings)
        prefix = f"contract{uuid.uuid4().hex[:8]}:"
        got = await resolve_in_batches(RedisIdentityGraph(r, prefix, RULES), stream, size)
        memory = MemoryGraph(RULES)
        want = [memory.resolve(ids).customer_id for ids in stream]
        assert [g.customer_id for g in got] == want
        assert await redis_state(r, prefix) == memory_state(memory)
        await r.aclose()

    asyncio.run(run())


def test_segment_reads_union_the_buckets(settings: Settings):
    r = sync_redis(settings)
    keys = RedisKeys(settings.topic_prefix)
    members = {f"c_{b}{i}": 1000 + i for i, b in enumerate(BUCKETS)}
    for cid, t in members.items():
        r.zadd(keys.segment_of("vip", cid), {cid: t})
    reader = SegmentReader(r, settings.topic_prefix)
    assert reader.count("vip") == 16
    assert (
        reader.members("vip", limit=5, offset=2)
        == sorted(members.items(), key=lambda kv: (kv[1], kv[0]))[2:7]
    )
    assert reader.is_member("vip", "c_33") and not reader.is_member("vip", "c_34")
