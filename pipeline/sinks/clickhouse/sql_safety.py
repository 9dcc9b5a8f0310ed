"""What a query on the embedded store's SQL endpoint may do, decided by the engine first.

Every session the endpoint opens gets the per-query limits and then ClickHouse's
``readonly=1`` and ``allow_ddl=0`` (readonly last: once set, no setting can change, not by
``SET``, not by a query's ``SETTINGS`` clause). The engine then refuses DDL, inserts,
mutations, setting changes and the table functions it guards (``url``, ``remote``,
``mysql``, ``executable``...).

Measured on chdb 26.9, ``readonly=1`` does not stop everything a server would (there
the user's grants and ``user_files_path`` do the rest): ``SYSTEM STOP MERGES`` and
``KILL QUERY`` run, the scalar ``file('/etc/...')`` reads any file, ``s3(...)`` gets
through, and ``INTO OUTFILE`` writes on this machine. So ClickHouse's own parser
(``formatQuery``) first turns the query into its canonical text, which refuses a second
statement, and the canonical text must be a read (``SELECT``/``WITH``, ``SHOW``,
``DESCRIBE``, ``EXISTS``, ``EXPLAIN``), without ``INTO OUTFILE`` and without a function
that reaches files, URLs or other servers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings


class SqlRefused(Exception):
    """A refusal in ClickHouse's terms: error code, its name and a message."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}. ({name})")
        self.code, self.name, self.message = code, name, message


READONLY = (164, "READONLY")


@dataclass(frozen=True)
class Limits:
    max_execution_time: int = 60
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 1024**3
    max_memory_usage: int = 2 * 1024**3

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_execution_time=settings.sql_max_execution_s,
            max_result_rows=settings.sql_max_result_rows,
            max_memory_usage=settings.sql_max_memory_mb * 1024**2,
        )

    def session(self, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Settings of a read-only session, in the order they must be applied.

        ``extra`` (settings a client asked for, already vetted) come first and may
        lower a limit; the limits and ``readonly`` come last so nothing after them can
        lift them.
        """
        out: dict[str, Any] = {"enable_http_compression": 1, **(extra or {})}
        for name, value in self.as_dict().items():
            asked = out.get(name)
            out[name] = min(int(asked), value) if asked is not None and int(asked) > 0 else value
        out.update({"result_overflow_mode": "throw", "allow_ddl": 0, "readonly": 1})
        return out

    def as_dict(self) -> dict[str, int]:
        return {
            "max_execution_time": self.max_execution_time,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "max_memory_usage": self.max_memory_usage,
        }


# URL parameters a ClickHouse HTTP client sends that are about the transport, not the
# query: consumed or ignored here (there are no sessions: each request is its own).
TRANSPORT = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "user",
        "password",
        "session_id",
        "session_timeout",
        "session_check",
        "quota_key",
        "wait_end_of_query",
        "buffer_size",
        "client_protocol_version",
        "role",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_response_buffer_size",
        "http_wait_end_of_query",
        "compress",
        "decompress",
        "readonly",
    }
)
# Settings a client may set for its query: how results are formatted and how the query is
# planned, nothing that reads or writes files, lifts a limit or changes the store.
HARMLESS = re.compile(
    r"^(output_format_(?!schema)\w+|format_csv_\w+|format_tsv_\w+|date_time_output_format"
    r"|date_time_input_format|session_timezone|enable_http_compression"
    r"|http_zlib_compression_level|max_block_size|max_threads|extremes|join_use_nulls"
    r"|joined_subquery_requires_alias|enable_analyzer|allow_experimental_analyzer"
    r"|prefer_column_name_to_alias|aggregate_functions_null_for_empty|union_default_mode"
    r"|use_query_cache|limit|offset|totals_mode|group_by_use_nulls|cast_keep_nullable"
    r"|cast_string_to_dynamic_use_inference|output_format_json_\w+|optimize_\w+"
    r"|allow_experimental_\w+_type|enable_\w+_type|allow_suspicious_low_cardinality_types"
    r"|mutations_sync|insert_deduplicate|async_insert|wait_for_async_insert)$"
)
# Settings that may be lowered, never raised (the session value is the ceiling).
LOWERABLE = frozenset(Limits().as_dict())


def vet_client_settings(
    params: Mapping[str, str], current: Callable[[str], str | None]
) -> dict[str, str]:
    """The settings among a request's parameters that its session may apply.

    A setting that is neither harmless nor a lowered limit is refused unless it asks for
    the value the session already has (so clients that echo defaults work): a changed one
    is ``READONLY``, as ClickHouse answers a readonly user, an unknown one
    ``UNKNOWN_SETTING``. ``current(name)`` is the session's value (None: no such setting).
    """
    out: dict[str, str] = {}
    for name, value in params.items():
        if name in TRANSPORT or name.startswith("param_"):
            continue
        if name in LOWERABLE:
            if value.isdigit() and int(value) > 0:
                out[name] = value
                continue
        elif HARMLESS.match(name):
            out[name] = value
            continue
        now = current(name)
        if now is None:
            raise SqlRefused(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        if now != value:
            raise SqlRefused(*READONLY, f"Cannot modify '{name}' setting in readonly mode")
    readonly = params.get("readonly")
    if readonly is not None and readonly not in ("1", "2"):
        raise SqlRefused(*READONLY, "Cannot modify 'readonly' setting in readonly mode")
    return out


def escape_param(text: str) -> str:
    """A String query-parameter value in ClickHouse's escaped form (as HTTP clients send)."""
    return (
        text.replace("\\", "\\\\")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
        .replace("\0", "\\0")
    )


READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "EXISTS", "EXPLAIN", "(")
# Functions (table or scalar) that reach files, URLs, object stores, other servers or
# programs. Most are refused by readonly=1 too; those chdb lets through are the reason
# this list exists (``file``, ``s3``).
REACHING_OUT = frozenset(
    name.lower()
    for name in [
        "file",
        "fileCluster",
        "url",
        "urlCluster",
        "s3",
        "s3Cluster",
        "gcs",
        "cosn",
        "oss",
        "hdfs",
        "hdfsCluster",
        "azureBlobStorage",
        "azureBlobStorageCluster",
        "remote",
        "remoteSecure",
        "cluster",
        "clusterAllReplicas",
        "mysql",
        "postgresql",
        "sqlite",
        "odbc",
        "jdbc",
        "mongodb",
        "redis",
        "executable",
        "input",
        "iceberg",
        "icebergS3",
        "icebergAzure",
        "icebergHDFS",
        "icebergLocal",
        "icebergS3Cluster",
        "icebergAzureCluster",
        "icebergHDFSCluster",
        "deltaLake",
        "deltaLakeS3",
        "deltaLakeAzure",
        "deltaLakeLocal",
        "deltaLakeCluster",
        "hudi",
        "hudiCluster",
        "paimon",
        "paimonS3",
        "paimonAzure",
        "paimonHDFS",
        "paimonLocal",
        "ytsaurus",
        "arrowFlight",
        "arrowflight",
        "prometheusQuery",
        "prometheusQueryRange",
        "catboostEvaluate",
        "dictionary",
    ]
)
_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"", re.S)
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_FORMAT = re.compile(r"^FORMAT (\S+)$", re.M)


def vet_statement(canonical: str) -> str | None:
    """Refuse what readonly=1 lets through; return the query's own FORMAT, if any.

    ``canonical`` is ``formatQuery`` of the query: one statement, keywords in capitals,
    each top-level clause on a line of its own, literals escaped onto one line.
    """
    head = canonical.lstrip()
    if not head.upper().startswith(READ_STATEMENTS):
        verb = head.split(None, 1)[0] if head else "(empty)"
        raise SqlRefused(
            *READONLY,
            f"Cannot execute query in readonly mode: {verb} is not served here "
            "(only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN)",
        )
    code = _LITERAL.sub("''", canonical)
    if re.search(r"\bINTO\s+OUTFILE\b", code, re.I):
        raise SqlRefused(
            610,
            "INTO_OUTFILE_NOT_ALLOWED",
            "INTO OUTFILE is not allowed: results come back in the response",
        )
    for match in _CALL.finditer(code):
        if match.group(1).lower() in REACHING_OUT:
            raise SqlRefused(
                *READONLY,
                f"Cannot execute query in readonly mode: function {match.group(1)} "
                "reaches outside the store",
            )
    found = _FORMAT.findall(code)
    return found[-1] if found else None
