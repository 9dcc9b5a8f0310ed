"""A loopback SQL endpoint served by the process that owns the embedded chdb store.

chdb allows one process per store; while the sink runs, ``crm sql`` and
``crm report`` send their queries here instead of opening the store themselves.
Read-only by the engine, not by parsing: every query runs with ClickHouse's
``readonly=1`` (no DDL, no writes, no table functions that reach files or URLs, no
changing settings) and per-query limits; ClickHouse's own parser (``formatQuery``)
rejects a second statement and shows whether the query writes a file on this machine
(``INTO OUTFILE``, which the embedded engine would execute).
"""

from __future__ import annotations

import json
import threading
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.sinks.clickhouse.client import connect

# Session settings of the query endpoint's own client (readonly last: once it is set, no
# other setting may change). A separate session, so a query can never leave the owner's
# session (the sink's inserts) read-only or limited.
LIMITS: dict[str, Any] = {
    "max_execution_time": 60,
    "max_result_rows": 1_000_000,
    "result_overflow_mode": "throw",
    "max_memory_usage": 2 * 1024**3,
    "readonly": 1,
}


class ReadOnlySql:
    """One statement at a time on a session the engine keeps read-only and limited.

    A query that fails can leave the embedded engine's result stream half read (a result
    over ``max_result_rows``); the next query would then read its leftovers, so after any
    failure the session is replaced by a fresh one.
    """

    def __init__(self, dsn: str, lock: threading.Lock) -> None:
        self.dsn, self.lock = dsn, lock
        self.client: Client | None = None

    def run(self, sql: str) -> dict[str, Any]:
        with self.lock:
            if self.client is None:
                self.client = connect(self.dsn, settings=LIMITS)
            try:
                return run_query(self.client, sql)
            except Exception:
                self.close()
                raise

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def run_query(client: Client, sql: str) -> dict[str, Any]:
    """Run one statement on a read-only client (see ``ReadOnlySql``)."""
    # One statement, as the engine parses it (a second one is a syntax error there).
    canonical = client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[
        0
    ][0]
    if "INTO OUTFILE" in str(canonical):
        raise ValueError("INTO OUTFILE is not allowed: results come back in the response")
    result = client.query(sql)
    return {
        "columns": list(result.column_names),
        "rows": [[_plain(v) for v in row] for row in result.result_rows],
    }


def serve(settings: Settings, owner: Client, lock: threading.Lock) -> ThreadingHTTPServer:
    """Answer queries on the owner's store through a read-only session of its own.

    ``owner`` is the sink's client (its session stays writable); ``lock`` serialises
    the two sessions' use of the embedded engine.
    """
    sql_session = ReadOnlySql(settings.clickhouse_dsn, lock)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sql = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            try:
                body, status = json.dumps(sql_session.run(sql)).encode(), 200
            except Exception as exc:
                body, status = json.dumps({"error": str(exc)}).encode(), 400
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", settings.sql_port), Handler)
    threading.Thread(target=server.serve_forever, name="sql-endpoint", daemon=True).start()
    return server
