"""Redis going away under traffic stops nothing for good (issue 17's "Redis blip").

Before: the worker's identity agent crashed within a second of Redis going down and never
came back; the API answered 500. Now the worker waits for Redis with backoff and goes on
where it stopped, and the API answers 503 with Retry-After meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest

from pipeline.config import REPO_ROOT
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.faults
WRITE = ("it-write-key", "")
READ = {"Authorization": "Bearer it-read-key"}
REDIS = str(REPO_ROOT / "infra" / "redis.sh")


def visit(collector: str, cookie: str, pages: int, first: int = 0) -> None:
    # Distinct pages: without a messageId the collector derives one from the content.
    batch = [
        {"type": "page", "anonymousId": cookie, "name": f"p{i}"}
        for i in range(first, first + pages)
    ]
    r = httpx.post(f"{collector}/v1/batch", auth=WRITE, json={"batch": batch})
    assert r.status_code == 200, r.text


def test_worker_and_api_ride_out_a_redis_restart(pipeline_env: dict[str, Any]) -> None:
    c, api, worker = pipeline_env["collector"], pipeline_env["api"], pipeline_env["worker"]
    before, during = f"ck-{uuid.uuid4().hex[:8]}", f"ck-{uuid.uuid4().hex[:8]}"

    def lookup(cookie: str) -> httpx.Response:
        return httpx.get(f"{api}/v1/profiles/by/anonymous_id/{cookie}", headers=READ)

    visit(c, before, 2)
    wait_for(lambda: lookup(before), lambda r: r.status_code == 200 and r.json()["events"] == 2)

    subprocess.run([REDIS, "stop"], check=True, env=os.environ)
    try:
        visit(c, during, 3)  # the collector needs Kafka only
        down = lookup(before)
        assert down.status_code == 503 and down.headers["retry-after"] == "1", down.text
        time.sleep(4)  # long enough for the old worker to have crashed several times over
        assert worker.poll() is None, "the worker exited while Redis was down"
    finally:
        subprocess.run([REDIS, "start"], check=True, env=os.environ)

    wait_for(lambda: lookup(during), lambda r: r.status_code == 200 and r.json()["events"] == 3)
    assert lookup(before).json()["events"] == 2  # nothing applied twice by the retries
    visit(c, during, 1, first=3)
    wait_for(lambda: lookup(during), lambda r: r.status_code == 200 and r.json()["events"] == 4)
    log = (pipeline_env["logs"] / "worker.log").read_text()
    assert "dependency unavailable, retrying" in log
