"""One insert of a batch, whatever ClickHouse answers: done, retried, or the poison split out.

ClickHouse's answer decides (its ``Code: N`` in the exception text):

* **transient** (no code: the server or the embedded engine is unreachable; or a code
  such as ``TOO_MANY_PARTS``, ``MEMORY_LIMIT_EXCEEDED``, ``TIMEOUT_EXCEEDED``): back off
  and insert the same rows with the same token again, for as long as it takes;
* **configuration** (a missing table, column or database, a refused user): nothing
  the data can fix; retried with backoff too, logged as an error so an operator acts;
* **data** (every other code: a value the column cannot hold, a row the format cannot
  read): the insert is split in halves, each inserted with a token derived from the
  batch's (``<token>/<first>-<last>`` over the row indexes, so a replay after a crash
  splits the same way and ClickHouse drops what it already has) until the rows that
  fail alone are known. Those become ``failed_events`` rows with the reason and their
  original bytes (``crm_events_dead_lettered_total{error_type="sink"}``); the others
  are stored. A batch is one insert block (``CRM_CLICKHOUSE_BATCH`` rows is far below
  ``max_insert_block_size``), so a refused insert wrote nothing.

Every wait ends early when the sink is told to stop (SIGTERM): :class:`SinkStopped`
propagates, the batch's offsets are not committed and its intent is replayed at the next
start.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from pipeline.logs import get_logger
from pipeline.metrics import DEAD_LETTERED, DEPENDENCY_UP, EVENTS_OUT, RETRIES, SINK_SECONDS
from pipeline.sinks.clickhouse.batch import Insert
from pipeline.sinks.clickhouse.rows import FAILED_COLUMNS
from pipeline.sinks.clickhouse.wire import FORMAT, SINK_ERROR, message_failure, pack

log = get_logger("clickhouse-sink")
Kind = Literal["transient", "configuration", "data"]
MAX_DELAY_S = 10.0
# Codes of a busy or briefly unavailable server: the same insert will succeed later.
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        164,  # READONLY (a replica that lost its keeper session)
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        999,  # KEEPER_EXCEPTION
    }
)
# Codes no row can cause and no retry can cure: the schema or the credentials are wrong.
CONFIGURATION_CODES = frozenset(
    {
        16,  # NO_SUCH_COLUMN_IN_TABLE
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)
_CODE = re.compile(r"Code: (\d+)\.")
_ORIGINAL = FAILED_COLUMNS.index("original")


class SinkStopped(Exception):
    """The sink was told to stop while waiting for a dependency."""


def error_code(exc: BaseException) -> int | None:
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def classify(exc: BaseException) -> Kind:
    code = error_code(exc)
    if code is None or code in TRANSIENT_CODES:
        return "transient"
    return "configuration" if code in CONFIGURATION_CODES else "data"


def reason_of(exc: BaseException) -> str:
    """ClickHouse's message without its repeated prefixes and version suffix."""
    text = str(exc).replace("DB::Exception: ", "")
    text = re.sub(r"\s*\(version [^)]*\)\.?", "", text)
    return re.sub(r"^(Code: \d+\. )+", "", text).strip()[:1000]


class Backoff:
    """Waits that double up to ``MAX_DELAY_S`` and end at once when ``stop`` is set."""

    def __init__(self, stop: threading.Event, first_s: float = 0.2) -> None:
        self.stop, self.delay = stop, first_s

    def wait(self) -> None:
        if self.stop.wait(self.delay):
            raise SinkStopped
        self.delay = min(self.delay * 2, MAX_DELAY_S)


class Inserter:
    """Inserts parts through a client shared with another thread (hence ``lock``)."""

    def __init__(
        self, client: Client, lock: threading.Lock, stop: threading.Event | None = None
    ) -> None:
        self.client, self.lock = client, lock
        self.stop = stop or threading.Event()

    def insert(self, part: Insert) -> int:
        """Store the part; return the rows written (its own and the dead-lettered)."""
        if len(part.items) != part.rows:
            raise ValueError(
                f"{part.table} insert has {part.rows} rows but {len(part.items)} items"
            )
        rejected = self._split(part, part.items, 0)
        stored = part.rows - len(rejected)
        if rejected:
            stored += self._dead_letter(part, rejected)
        return stored

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        """A read the sink needs (its duplicate check), waiting out an unavailable store."""
        backoff = Backoff(self.stop)
        while True:
            try:
                with self.lock:
                    result = self.client.query(sql, parameters=parameters)
            except Exception as exc:  # an outage is waited out; a bad query is a bug
                if classify(exc) != "transient":
                    raise
                RETRIES.labels("clickhouse-query").inc()
                DEPENDENCY_UP.labels("clickhouse-sink", "clickhouse").set(0)
                log.warning("clickhouse query failed, retrying", error=str(exc)[:300])
                backoff.wait()
                continue
            return result

    def _attempt(self, table: str, columns: list[str], blob: bytes, token: str) -> None:
        start = time.perf_counter()
        with self.lock:
            self.client.raw_insert(
                table,
                columns,
                insert_block=blob,
                fmt=FORMAT,
                settings={
                    "insert_deduplication_token": token,
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                },
            )
        SINK_SECONDS.labels("clickhouse").observe(time.perf_counter() - start)

    def _until_stored(
        self, table: str, columns: list[str], blob: bytes, token: str
    ) -> Exception | None:
        """Insert until it succeeds (None) or ClickHouse refuses the data (the error)."""
        backoff = Backoff(self.stop)
        while True:
            try:
                self._attempt(table, columns, blob, token)
            except Exception as exc:  # classified below; anything unknown is retried
                kind = classify(exc)
                if kind == "data":
                    return exc
                RETRIES.labels("clickhouse-insert").inc()
                DEPENDENCY_UP.labels("clickhouse-sink", "clickhouse").set(0)
                (log.error if kind == "configuration" else log.warning)(
                    f"clickhouse insert failed ({kind}), retrying",
                    table=table,
                    error=str(exc)[:300],
                    retry_in=backoff.delay,
                )
                backoff.wait()
                continue
            DEPENDENCY_UP.labels("clickhouse-sink", "clickhouse").set(1)
            return None

    def _split(
        self, part: Insert, items: Sequence[tuple[list[Any], Any]], first: int
    ) -> list[tuple[Any, str]]:
        """Insert ``items`` (rows ``first``.. of the part); return ``(message, reason)`` refused."""
        whole = first == 0 and len(items) == part.rows
        token = part.token if whole else f"{part.token}/{first}-{first + len(items) - 1}"
        blob = part.blob if whole else pack([row for row, _m in items])
        refused = self._until_stored(part.table, part.columns, blob, token)
        if refused is None:
            EVENTS_OUT.labels("clickhouse", part.table).inc(len(items))
            return []
        if len(items) == 1:
            return [(items[0][1], reason_of(refused))]
        half = len(items) // 2
        return self._split(part, items[:half], first) + self._split(
            part, items[half:], first + half
        )

    def _dead_letter(self, part: Insert, rejected: list[tuple[Any, str]]) -> int:
        """``failed_events`` rows for what ClickHouse refused; how many were stored."""
        DEAD_LETTERED.labels(SINK_ERROR).inc(len(rejected))
        log.warning("clickhouse refused rows, see failed_events", table=part.table, n=len(rejected))
        if part.table != "failed_events":
            items = [(message_failure(m, f"{part.table}: {why}"), m) for m, why in rejected]
            return self.insert(_part("failed_events", items, f"{part.token}/refused"))
        # A dead letter refused in turn: keep its position and the reason, not its bytes.
        stripped = [(_without_original(message_failure(m, why)), m) for m, why in rejected]
        letters = _part("failed_events", stripped, f"{part.token}/stripped")
        lost = self._split(letters, letters.items, 0)
        for m, why in lost:  # still in Kafka at its position: say where
            log.error(
                "clickhouse refused a dead letter; the record stays in kafka only",
                topic=m.topic(),
                partition=m.partition(),
                offset=m.offset(),
                reason=why,
            )
        return len(stripped) - len(lost)


def _part(table: str, items: list[tuple[list[Any], Any]], token: str) -> Insert:
    return Insert(table, FAILED_COLUMNS, pack([r for r, _m in items]), len(items), token, items)


def _without_original(row: list[Any]) -> list[Any]:
    row[_ORIGINAL] = ""
    return row
