"""Starting and stopping our own long-running commands (collector, worker, API) as children."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx


@contextmanager
def crm_process(
    args: list[str],
    health_url: str | None = None,
    log_path: Path | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``crm <args>`` as a child; wait until ``health_url`` answers; stop it on exit."""
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        if health_url:
            wait_http(health_url, timeout, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path and out is not subprocess.DEVNULL:
            out.close()  # type: ignore[union-attr]


def http_service(
    command: str,
    port: int,
    log_path: Path | None,
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``crm collector|api --port N`` as a child, ready once ``/health`` answers (a busy
    2-core machine right after a broker restart has taken more than 30 s)."""
    return crm_process(
        [command, "--port", str(port)],
        f"http://127.0.0.1:{port}/health",
        log_path,
        timeout=timeout,
        env=env,
    )


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
