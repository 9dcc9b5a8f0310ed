"""Running a query from any process: through the store owner if one runs, else directly."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.sinks.clickhouse.query_server import ReadOnlySql


def query(settings: Settings, sql: str, open_store: bool = True) -> dict[str, Any]:
    """Run SQL through the sink's endpoint, or open the embedded store if no sink runs.

    ``open_store=False`` never opens it: a poller (a test, a dashboard) must not take the
    store's lock while a sink is starting, or the sink could not open it.
    """
    if settings.clickhouse_dsn.startswith("chdb://"):
        try:
            resp = httpx.post(f"http://127.0.0.1:{settings.sql_port}/", content=sql, timeout=60)
        except httpx.HTTPError:
            if not open_store:
                raise
            resp = None  # no sink running: open the store ourselves
        if resp is not None:
            body = resp.json()
            if resp.status_code != 200:
                raise ValueError(body.get("error", resp.text))
            return dict(body)
    session = ReadOnlySql(settings.clickhouse_dsn, threading.Lock())
    try:
        return session.run(sql)
    finally:
        session.close()
