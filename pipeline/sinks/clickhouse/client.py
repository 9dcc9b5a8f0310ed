"""Connections by URL and schema migrations, the same for embedded chdb and a server.

``chdb:///path`` opens the embedded engine (one process owns the store);
``http://host:8123`` (optionally ``?user=&password=&database=``) a server.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.config import REPO_ROOT
from pipeline.logs import get_logger

MIGRATIONS = REPO_ROOT / "infra" / "clickhouse" / "migrations"
QUERIES = REPO_ROOT / "infra" / "clickhouse" / "queries"
log = get_logger("clickhouse")


def connect(dsn: str, wait_s: float = 60.0, settings: dict[str, Any] | None = None) -> Client:
    """A client for a server URL or the embedded store.

    The embedded store admits one process; a previous owner that was just killed can
    hold its lock a moment longer, so opening it is retried for ``wait_s`` seconds.
    """
    if not dsn.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=dsn, settings=settings)
    try:
        importlib.import_module("chdb")
    except ImportError:
        raise RuntimeError(
            "the embedded ClickHouse engine is an extra: pip install 'crm-pipeline[embedded]', "
            "or set CRM_CLICKHOUSE_URL to a ClickHouse server (http://user:pass@host:8123/db)"
        ) from None
    Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            return clickhouse_connect.get_client(dsn=dsn, settings=settings)
        except Exception as exc:  # chdb raises its own errors for a held lock
            if time.monotonic() + delay > deadline:
                raise
            log.warning("embedded ClickHouse busy, retrying", error=str(exc)[:200], retry_in=delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def statements(sql: str) -> list[str]:
    """Split a migration file on ``;`` at line ends, dropping comment-only chunks."""
    out = []
    for chunk in sql.split(";\n"):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if body.strip().rstrip(";").strip():
            out.append(body.strip().rstrip(";"))
    return out


def migrate(client: Client, directory: Path = MIGRATIONS) -> list[str]:
    """Apply unapplied migration files in name order; return the names applied.

    Versioned in ``schema_migrations`` with a checksum: an edited, already-applied
    file is an error rather than a silent divergence.
    """
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY name"
    )
    done = {
        r[0]: r[1]
        for r in client.query("SELECT name, checksum FROM schema_migrations FINAL").result_rows
    }
    applied = []
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if path.name in done:
            if done[path.name] != checksum:
                raise RuntimeError(
                    f"migration {path.name} changed after it was applied; add a new file"
                )
            continue
        for statement in statements(text):
            client.command(statement)
        client.insert(
            "schema_migrations", [[path.name, checksum]], column_names=["name", "checksum"]
        )
        applied.append(path.name)
    return applied


def query_rows(client: Client, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    result = client.query(sql)
    return list(result.column_names), [tuple(r) for r in result.result_rows]
