"""A loopback SQL endpoint served by the process that owns the embedded chdb store.

chdb allows one process per store; while the sink runs, ``crm sql`` and
``crm report`` send their queries here instead of opening the store themselves.
Read-only: only SELECT/SHOW/DESCRIBE/WITH/EXPLAIN statements are accepted.
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

READ_ONLY = ("select", "show", "describe", "desc", "with", "explain", "exists")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _first_word(sql: str) -> str:
    lines = [
        ln for ln in sql.strip().splitlines() if ln.strip() and not ln.strip().startswith("--")
    ]
    return lines[0].strip().lower() if lines else ""


def run_query(client: Client, lock: threading.Lock, sql: str) -> dict[str, Any]:
    if not _first_word(sql).startswith(READ_ONLY):
        raise ValueError("only read-only statements (SELECT, SHOW, DESCRIBE, WITH, EXPLAIN)")
    with lock:
        result = client.query(sql)
    return {
        "columns": list(result.column_names),
        "rows": [[_plain(v) for v in row] for row in result.result_rows],
    }


def serve(settings: Settings, client: Client, lock: threading.Lock) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sql = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
            try:
                body, status = json.dumps(run_query(client, lock, sql)).encode(), 200
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
