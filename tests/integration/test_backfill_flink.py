"""The backfill on portable runners equals the DirectRunner's and the stream's.

`crm backfill --runner flink|prism --job-endpoint HOST:PORT` submits through Beam's
portable runner to a job server this test starts (a fixture: a free port, wait until
its gRPC job service answers, stop it at the end), with the Python SDK harness in
LOOPBACK mode: no Docker, the harness runs in the `crm backfill` process, so it
writes to Redis and to the embedded ClickHouse store that process opened.

* Flink: Beam's Flink job server jar (embedded Flink cluster, no --flink-master),
  fetched by `infra/beam-runners.sh fetch` from Maven Central; skipped when that jar is
  not there (Maven Central as this machine sees it serves no Beam runner artifacts).
* Prism: Beam's portable runner in Go, built by the same script with `go install`.

The same archive (tests/integration/backfill_parity.py's workload) is backfilled by
the DirectRunner into one store and by the portable runner into another: counters,
ClickHouse aggregates and Redis profiles must be equal to each other and to the stream's.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import msgspec
import pytest

from pipeline.config import REPO_ROOT, Settings
from tests.integration.backfill_parity import (
    aggregates,
    assert_same_profiles,
    backfill_env,
    crm,
    live_workload,
)
from tests.integration.conftest import free_port
from tests.integration.profiles import stored_profiles

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RUNNERS_SH = str(REPO_ROOT / "infra" / "beam-runners.sh")
# What Flink's own launch scripts open to its serializers on Java 17 (the job server's
# embedded cluster runs in this one JVM, started without them).
JAVA17_OPENS = [
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in (
        "java.lang",
        "java.lang.invoke",
        "java.lang.reflect",
        "java.io",
        "java.net",
        "java.nio",
        "java.text",
        "java.time",
        "java.util",
        "java.util.concurrent",
        "java.util.concurrent.atomic",
        "sun.nio.ch",
    )
]


def runner_path(what: str) -> str | None:
    """The job server's jar or binary from infra/beam-runners.sh, or None when not fetched."""
    out = subprocess.run([RUNNERS_SH, what], capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


@contextmanager
def job_server(cmd: list[str], port: int, log: Path, timeout: float = 180) -> Iterator[str]:
    """Run a job server; yield its endpoint once its gRPC service accepts connections."""
    endpoint = f"localhost:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(endpoint) as channel:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"job server exited {proc.returncode}: {log.read_text()}")
                try:
                    grpc.channel_ready_future(channel).result(timeout=2)
                    break
                except grpc.FutureTimeoutError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"job server not ready in {timeout}s") from None
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def flink_endpoint(tmp_path: Path) -> Iterator[str]:
    jar = runner_path("flink-jar")
    if jar is None:
        pytest.skip(
            "no Beam Flink job server jar: `infra/beam-runners.sh fetch` could not get "
            "org.apache.beam:beam-runners-flink-1.20-job-server from Maven Central"
        )
    port = free_port()
    cmd = [
        "java",
        "-Xms128m",
        "-Xmx768m",
        *JAVA17_OPENS,
        "-jar",
        jar,
        "--job-port",
        str(port),
        "--artifact-port",
        str(free_port()),
        "--expansion-port",
        str(free_port()),
        "--artifacts-dir",
        str(tmp_path / "flink-artifacts"),
    ]  # no --flink-master: the job server runs an embedded Flink cluster
    with job_server(cmd, port, tmp_path / "flink-job-server.log") as endpoint:
        yield endpoint


@pytest.fixture
def prism_endpoint(tmp_path: Path) -> Iterator[str]:
    prism = runner_path("prism")
    if prism is None:
        pytest.skip("no Prism binary: run `infra/beam-runners.sh fetch` (needs Go)")
    port = free_port()
    cmd = [prism, f"--job_port={port}", "--serve_http=false", "--log_level=warn"]
    with job_server(cmd, port, tmp_path / "prism.log") as endpoint:
        yield endpoint


RUN_FIELDS = ("seconds", "events_per_second")  # timings: the rest of the summary must agree


def check_runner(settings: Settings, tmp_path: Path, runner: str, endpoint: str) -> None:
    with ExitStack() as stack:
        live = live_workload(settings, tmp_path, stack)
    # The live processes are stopped: the backfills read only the archive.
    archive = str(live.archive)
    direct_env, direct_prefix = backfill_env(live, tmp_path, "direct")
    portable_env, portable_prefix = backfill_env(live, tmp_path, runner)
    direct = json.loads(crm(direct_env, "backfill", "--archive", archive, "--json"))
    started = time.monotonic()
    portable = json.loads(
        crm(
            portable_env,
            "backfill",
            "--runner",
            runner,
            "--job-endpoint",
            endpoint,
            "--archive",
            archive,
            "--json",
        )
    )
    print(f"\n{runner} backfill of {live.total} events: {time.monotonic() - started:.1f}s wall")
    assert portable["events_read"] == live.total
    assert portable["clickhouse_rows_inserted"] == live.total
    for field in RUN_FIELDS:
        del direct[field], portable[field]
    assert portable == direct

    assert aggregates(portable_env) == live.aggregates == aggregates(direct_env)
    assert_same_profiles(settings, settings.topic_prefix, portable_prefix)
    # Same customers, versions and every field as the DirectRunner's, not only the compared ones.
    assert {
        c: msgspec.to_builtins(p) for c, p in stored_profiles(settings, portable_prefix).items()
    } == {c: msgspec.to_builtins(p) for c, p in stored_profiles(settings, direct_prefix).items()}


def test_backfill_on_flink_equals_direct_runner_and_stream(
    settings: Settings, tmp_path: Path, flink_endpoint: str
):
    check_runner(settings, tmp_path, "flink", flink_endpoint)


def test_backfill_on_prism_equals_direct_runner_and_stream(
    settings: Settings, tmp_path: Path, prism_endpoint: str
):
    check_runner(settings, tmp_path, "prism", prism_endpoint)
