"""Real services for integration tests, started once per session through our own infra/ scripts.

Tests use their own data directory and ports (so a running `make demo` is not
disturbed) and each test gets its own topic prefix.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from pipeline.cli.processes import crm_process, http_service
from pipeline.config import REPO_ROOT, Settings, get_settings
from pipeline.kafka.topics import ensure_topics

TEST_ENV = {
    "CRM_DATA_DIR": str(REPO_ROOT / ".crm-test"),
    "CRM_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    "CRM_REDIS_URL": "redis://127.0.0.1:16379/0",
    "CRM_WRITE_KEYS": "it-write-key",
    "CRM_READ_KEYS": "it-read-key",
    "CRM_LOG_FORMAT": "json",
}
SERVICES = str(REPO_ROOT / "infra" / "services.sh")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services() -> Iterator[dict[str, str]]:
    os.environ.update(TEST_ENV)
    get_settings.cache_clear()
    # CRM_TEST_SERVICES=shared: start the test services if they are down and leave them up,
    # so several pytest runs can share them (each test has its own topics and keys anyway).
    shared = os.environ.get("CRM_TEST_SERVICES") == "shared"
    if not shared:
        subprocess.run([SERVICES, "down"], check=False)
        shutil.rmtree(TEST_ENV["CRM_DATA_DIR"], ignore_errors=True)
    subprocess.run([SERVICES, "up"], check=True)
    yield TEST_ENV
    if not shared:
        subprocess.run([SERVICES, "down"], check=False)


@pytest.fixture
def redis_env() -> dict[str, str]:
    """Extra CRM_REDIS_* settings of a test's processes; a module overrides this fixture to
    run its tests against another Redis (tests/integration/test_redis_cluster.py)."""
    return {}


@pytest.fixture
def settings(services: dict[str, str], redis_env: dict[str, str]) -> Settings:
    """Settings with a fresh topic prefix: every test sees empty topics."""
    redis = {
        "redis_url": redis_env.get("CRM_REDIS_URL", TEST_ENV["CRM_REDIS_URL"]),
        "redis_cluster": redis_env.get("CRM_REDIS_CLUSTER", "false") == "true",
    }
    s = Settings(topic_prefix=f"it{uuid.uuid4().hex[:8]}.", topic_partitions=3, **redis)
    ensure_topics(s)
    return s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def collector(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A real `crm collector` process on a free port, publishing to this test's topics."""
    port = free_port()
    env = {"CRM_TOPIC_PREFIX": settings.topic_prefix, "CRM_ACK_TIMEOUT_MS": "3000"}
    with crm_process(
        ["collector", "--port", str(port)],
        f"http://127.0.0.1:{port}/health",
        tmp_path / "collector.log",
        env=env,
    ):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def ch_settings(settings: Settings, tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    s = settings.model_copy(
        update={
            "redis_prefix": settings.topic_prefix,
            "sql_port": free_port(),
            "clickhouse_url": f"chdb://{tmp_path / 'ch'}",
        }
    )
    env = {
        "CRM_TOPIC_PREFIX": s.topic_prefix,
        "CRM_REDIS_PREFIX": s.redis_prefix,
        "CRM_CLICKHOUSE_URL": s.clickhouse_url,
        "CRM_SQL_PORT": str(s.sql_port),
        "CRM_WORKER_ID": f"w{uuid.uuid4().hex[:6]}",
        "CRM_TOPIC_PARTITIONS": "3",
        "CRM_CLICKHOUSE_BATCH_MS": "200",
    }
    return s, env


def wait_for(fetch: Any, done: Any, timeout: float = 90.0, what: str = "condition") -> Any:
    """Poll ``fetch`` until ``done(value)``; the failure shows the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if done(last):
            return last
        time.sleep(0.25)
    shown = last.text[:800] if isinstance(last, httpx.Response) else last
    raise AssertionError(f"{what} not met within {timeout}s; last value: {shown}")


def group_members(admin: AdminClient, group: str) -> frozenset[str] | None:
    """Member ids of a consumer group (a Faust app id is one); None while its coordinator
    moves or loads (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS), to poll again."""
    try:
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException:
        return None
    return frozenset(m.member_id for m in described.members)


def wait_until(check: Any, timeout: float = 120.0, what: str = "") -> None:
    """Poll ``check() -> (ok, last)`` until ok; the failure shows the last value."""
    wait_for(check, lambda r: r[0], timeout, what or "condition")


@contextmanager
def running_pipeline(
    settings: Settings, logs: Path, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Collector, one worker and the lookup API on ``settings``' topics and Redis keys."""
    env = {
        **(extra_env or {}),
        "CRM_TOPIC_PREFIX": settings.topic_prefix,
        "CRM_REDIS_PREFIX": settings.topic_prefix,
        "CRM_WORKER_ID": f"w{uuid.uuid4().hex[:6]}",
        "CRM_TOPIC_PARTITIONS": "3",
    }
    cport, aport = free_port(), free_port()
    with (
        http_service("collector", cport, logs / "collector.log", env),
        crm_process(["worker", "--name", "a"], None, logs / "worker.log", env=env) as worker,
        http_service("api", aport, logs / "api.log", env),
    ):
        yield {
            "worker": worker,
            "collector": f"http://127.0.0.1:{cport}",
            "api": f"http://127.0.0.1:{aport}",
            "logs": logs,
            "env": env,
        }


@pytest.fixture
def pipeline_env(
    settings: Settings, tmp_path: Path, redis_env: dict[str, str]
) -> Iterator[dict[str, Any]]:
    """Collector, one worker and the lookup API on this test's topics and Redis keys."""
    with running_pipeline(settings, tmp_path, redis_env) as env:
        yield env
