"""Read-only queries on the embedded store, each in a chdb session of its own.

chdb admits any number of sessions (connection handles) on the one engine a process
hosts, each with its own settings; opening one costs well under a millisecond. So every
request gets a fresh session: the settings it was allowed, the limits, ``readonly=1``
(see ``sql_safety``), then its query. Nothing a request does outlives it, and the sink's
own session stays writable.

Results are ClickHouse's bytes in the requested output format, never re-encoded. Formats
whose blocks concatenate into a valid stream (``Native``, ``RowBinary``, ``TabSeparated``,
``CSV``, ``JSONEachRow``...) are streamed block by block from the engine; the others
(``JSON``, ``*WithNames*``, ``Parquet``...) are produced whole, within the limits.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.sinks.clickhouse.http_protocol import ClickHouseError, engine_error
from pipeline.sinks.clickhouse.sql_safety import (
    Limits,
    SqlRefused,
    escape_param,
    vet_client_settings,
    vet_statement,
)

# Formats whose per-block output, concatenated, is the format's whole output (measured:
# chdb's streaming writes each block as a complete document, so JSON, Parquet or a
# *WithNames header would repeat).
STREAMABLE = re.compile(
    r"^(Native|RowBinary|TabSeparated|TSV|TabSeparatedRaw|TSVRaw|CSV|JSONEachRow"
    r"|JSONCompactEachRow|JSONStringsEachRow|JSONCompactStringsEachRow|Values|LineAsString"
    r"|Null)$",
    re.I,
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(value: Any) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Answer:
    """A query's result: its format, and either its whole bytes or a stream of blocks."""

    fmt: str
    body: bytes | None = None
    blocks: BlockStream | None = None
    summary: dict[str, str] = field(default_factory=dict)
    close: Any = None  # releases the session once the blocks are read


class EmbeddedSql:
    """Opens read-only sessions on the engine this process owns."""

    def __init__(self, path: str, limits: Limits, max_concurrent: int = 4) -> None:
        import chdb

        self.chdb = chdb
        self.path = os.path.realpath(path)
        self.limits = limits
        self.slots = threading.BoundedSemaphore(max_concurrent)
        probe = self.chdb.connect(self.path)
        try:
            row = probe.query("SELECT version(), timezone()", "TabSeparated").bytes()
            self.version, self.timezone = row.decode().strip().split("\t")
        finally:
            probe.close()

    def run(
        self,
        sql: str,
        params: Mapping[str, str],
        query_params: Mapping[str, str],
        default_format: str = "TabSeparated",
        database: str | None = None,
        stream: bool = True,
    ) -> Answer:
        """Vet and run one statement; the caller must call ``answer.close()`` when done."""
        if not self.slots.acquire(timeout=30):
            raise ClickHouseError(
                202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous queries"
            )
        conn = None
        try:
            conn = self.chdb.connect(self.path)
            fmt, select = self._prepare(conn, sql, params, default_format, database)
            answer = self._execute(conn, sql, dict(query_params), fmt, stream and select)
        except BaseException:
            if conn is not None:
                conn.close()
            self.slots.release()
            raise
        session = conn

        def close() -> None:
            session.close()
            self.slots.release()

        answer.close = _once(close)
        return answer

    def vet_only(self, sql: str, params: Mapping[str, str]) -> None:
        """Refuse ``sql`` as ``run`` would, without running it (a body too large to run)."""
        conn = self.chdb.connect(self.path)
        try:
            self._prepare(conn, sql, params, "TabSeparated", None)
        finally:
            conn.close()

    def _prepare(
        self,
        conn: Any,
        sql: str,
        params: Mapping[str, str],
        default_format: str,
        database: str | None,
    ) -> tuple[str, bool]:
        """Open the session read-only; the output format and whether the engine streams it."""
        try:
            if database:
                conn.query(f"USE {_identifier(database)}", "TabSeparated")

            def current(name: str) -> str | None:
                out = conn.query(
                    "SELECT value FROM system.settings WHERE name = {n:String}",
                    "TabSeparatedRaw",
                    params={"n": escape_param(name)},
                ).bytes()
                return out.decode().rstrip("\n") if out else None

            extra = vet_client_settings(params, current)
            for name, value in self.limits.session(extra).items():
                if not _NAME.match(name):
                    raise SqlRefused(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
                conn.query(f"SET {name} = {_literal(value)}", "TabSeparated")
            canonical = conn.query(
                "SELECT formatQuery({q:String})",
                "TabSeparatedRaw",
                params={"q": escape_param(sql)},
            ).bytes()
        except SqlRefused as exc:
            raise ClickHouseError(exc.code, exc.name, exc.message) from None
        except ClickHouseError:
            raise
        except Exception as exc:
            raise engine_error(exc) from None
        text = canonical.decode("utf-8", errors="replace")
        try:
            own = vet_statement(text)
        except SqlRefused as exc:
            raise ClickHouseError(exc.code, exc.name, exc.message) from None
        # chdb streams SELECTs only (SHOW, DESCRIBE... are "not supported for streaming")
        return own or default_format, text.lstrip().startswith(("SELECT", "WITH", "("))

    def _execute(
        self, conn: Any, sql: str, query_params: dict[str, str], fmt: str, stream: bool
    ) -> Answer:
        start = time.perf_counter()
        try:
            if stream and STREAMABLE.match(fmt):
                result = conn.send_query(sql, fmt, params=query_params)
                return Answer(fmt, blocks=BlockStream(result, start))
            result = conn.query(sql, fmt, params=query_params)
        except Exception as exc:
            raise engine_error(exc) from None
        body = result.bytes() or b""
        rows = str(result.rows_read())
        size = str(result.bytes_read())
        elapsed = str(int((time.perf_counter() - start) * 1e9))
        return Answer(fmt, body=body, summary=summary(rows, size, elapsed))


def summary(rows: str = "0", size: str = "0", elapsed_ns: str = "0") -> dict[str, str]:
    """``X-ClickHouse-Summary`` as the server writes it (numbers as strings)."""
    return {
        "read_rows": rows,
        "read_bytes": size,
        "written_rows": "0",
        "written_bytes": "0",
        "total_rows_to_read": rows,
        "result_rows": rows,
        "result_bytes": size,
        "elapsed_ns": elapsed_ns,
    }


def summary_header(values: Mapping[str, str]) -> str:
    return json.dumps(dict(values), separators=(",", ":"))


class BlockStream:
    """Blocks of a streamed result; counts rows and bytes for the summary."""

    def __init__(self, result: Any, start: float) -> None:
        self.result, self.start = result, start
        self.rows = self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self.result:
                self.rows += chunk.rows_read()
                self.size += chunk.bytes_read()
                data = chunk.bytes()
                if data:
                    yield data
        except Exception as exc:
            raise engine_error(exc) from None
        finally:
            self.result.close()

    def summary(self) -> dict[str, str]:
        elapsed = str(int((time.perf_counter() - self.start) * 1e9))
        return summary(str(self.rows), str(self.size), elapsed)


def _once(fn: Any) -> Any:
    done = threading.Event()

    def call() -> None:
        if not done.is_set():
            done.set()
            fn()

    return call
