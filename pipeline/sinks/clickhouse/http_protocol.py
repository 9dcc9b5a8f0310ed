"""ClickHouse's HTTP interface, the parts a client sees: request, credentials, errors, encodings.

What ClickHouse's own server does and its clients rely on (clickhouse-connect, the JDBC
driver, curl): the query comes from the ``query`` URL parameter followed by the body (or
from a ``multipart/form-data`` field), query parameters are ``param_<name>``, credentials
are HTTP Basic, ``X-ClickHouse-User``/``X-ClickHouse-Key`` or ``user``/``password``;
errors are a ``Code: N. DB::Exception: ...`` body with ``X-ClickHouse-Exception-Code`` and
an HTTP status by error code; a failure after the first bytes of a streamed result is
framed with ``X-ClickHouse-Exception-Tag`` markers; responses are compressed when
``enable_http_compression`` is on and ``Accept-Encoding`` asks.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import gzip
import importlib
import re
import secrets
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import lz4.frame


class Headers(Protocol):
    """Request headers: a mapping, or the handler's ``email.message.Message``."""

    def get(self, name: str, default: Any = None, /) -> Any: ...


class Encoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


def _zstd() -> Any:
    try:
        return importlib.import_module("compression.zstd")  # Python 3.14+
    except ImportError:
        return importlib.import_module("backports.zstd")  # clickhouse-connect requires it


class _Zlib:
    def __init__(self, wbits: int, level: int) -> None:
        self.z = zlib.compressobj(level, zlib.DEFLATED, wbits)

    def compress(self, data: bytes) -> bytes:
        return self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)

    def flush(self) -> bytes:
        return self.z.flush()


class _Lz4:
    def __init__(self) -> None:
        self.z = lz4.frame.LZ4FrameCompressor(auto_flush=True)
        self.started = False

    def compress(self, data: bytes) -> bytes:
        head = b"" if self.started else self.z.begin()
        self.started = True
        return bytes(head + self.z.compress(data))

    def flush(self) -> bytes:
        return bytes((b"" if self.started else self.z.begin()) + self.z.flush())


class _Zstd:
    def __init__(self) -> None:
        self.mod = _zstd()
        self.z = self.mod.ZstdCompressor()

    def compress(self, data: bytes) -> bytes:
        return bytes(self.z.compress(data, self.mod.ZstdCompressor.FLUSH_BLOCK))

    def flush(self) -> bytes:
        return bytes(self.z.flush(self.mod.ZstdCompressor.FLUSH_FRAME))


ENCODINGS = ("gzip", "deflate", "lz4", "zstd")


def encoder(name: str, level: int = 3) -> Encoder:
    if name == "gzip":
        return _Zlib(16 + zlib.MAX_WBITS, level)
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS, level)
    if name == "lz4":
        return _Lz4()
    return _Zstd()


def choose_encoding(accept: str) -> str | None:
    """The first encoding the client accepts that this server writes (its order wins)."""
    for part in accept.split(","):
        name = part.split(";", 1)[0].strip().lower()
        if name in ENCODINGS and "q=0" not in part.replace(" ", "").split(";")[1:]:
            return name
    return None


def decode_body(body: bytes, encoding: str) -> bytes:
    """A request body sent with ``Content-Encoding`` (as ClickHouse accepts them)."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    if name == "gzip":
        return gzip.decompress(body)
    if name == "deflate":
        return zlib.decompress(body)
    if name == "lz4":
        return bytes(lz4.frame.decompress(body))
    if name == "zstd":
        return bytes(_zstd().decompress(body))
    raise ClickHouseError(
        48, "NOT_IMPLEMENTED", f"Content-Encoding {encoding!r} is not supported", status=415
    )


class ClickHouseError(Exception):
    """An error as the server reports it: ``Code: N. DB::Exception: ...`` and a status."""

    def __init__(self, code: int, name: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.name = code, name
        self.status = status if status is not None else http_status(code)
        self.text = f"Code: {code}. DB::Exception: {message}. ({name})"


_CODE = re.compile(r"Code: (\d+)\. ")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*(?:\(version [^)]*\))?\s*\.?\s*$")


def engine_error(exc: BaseException) -> ClickHouseError:
    """An exception raised by the engine, with its code and name as ClickHouse wrote them."""
    text = str(exc)
    start = text.find("Code: ")
    body = text[start:].strip() if start >= 0 else text.strip()
    codes = _CODE.findall(body)
    code = int(codes[-1]) if codes else 1001
    name = _NAME.search(body)
    err = ClickHouseError(code, name.group(1) if name else "STD_EXCEPTION", body)
    err.text = body if body.startswith("Code: ") else f"Code: {code}. DB::Exception: {body}"
    return err


def http_status(code: int) -> int:
    """The HTTP status ClickHouse's server answers for an error code."""
    if code in (516, 194):  # AUTHENTICATION_FAILED, REQUIRED_PASSWORD
        return 401
    if code in (164, 497, 291, 610):  # READONLY, ACCESS_DENIED, ..., INTO_OUTFILE_NOT_ALLOWED
        return 403
    if code in (60, 81, 47, 46, 73, 16, 50, 115):  # UNKNOWN_TABLE, _DATABASE, ..., _SETTING
        return 404
    if code in (62, 27, 36, 456, 457, 6, 26, 38, 41, 43, 44, 53, 69, 70, 72, 117, 386):
        return 400
    if code == 48:
        return 501
    if code == 202:  # TOO_MANY_SIMULTANEOUS_QUERIES
        return 503
    return 500


def exception_block(tag: str, text: str) -> bytes:
    """A failure after the response started, framed as ClickHouse 25.11+ frames it."""
    message = text.encode() + b"\n"
    return (
        b"\r\n__exception__\r\n"
        + tag.encode()
        + b"\r\n"
        + message
        + f"{len(message)} {tag}".encode()
        + b"\r\n__exception__\r\n"
    )


def exception_tag() -> str:
    return secrets.token_hex(8)


BINARY_FORMATS = re.compile(
    r"^(Native|RowBinary\w*|Parquet|Arrow\w*|ORC|Avro|MsgPack|Protobuf\w*|CapnProto|BSONEachRow"
    r"|Npy|LineAsString\w*)$",
    re.I,
)


def content_type(fmt: str) -> str:
    f = fmt.lower()
    if BINARY_FORMATS.match(fmt):
        return "application/octet-stream"
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        header = "present" if "withnames" in f else "absent"
        return f"text/csv; charset=UTF-8; header={header}"
    if f.startswith("json") and "eachrow" in f:
        return "application/x-ndjson; charset=UTF-8"
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    return "text/plain; charset=UTF-8"


@dataclass
class Credentials:
    user: str
    password: str
    given: bool  # False: the client sent none


def credentials(headers: Headers, params: Mapping[str, str]) -> Credentials:
    """Credentials the way ClickHouse accepts them (one way per request)."""
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except ValueError:
            raise ClickHouseError(
                516, "AUTHENTICATION_FAILED", "Malformed Authorization header"
            ) from None
        return Credentials(user or "default", password, True)
    if headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
        return Credentials(
            headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key", ""), True
        )
    if "user" in params or "password" in params:
        return Credentials(params.get("user") or "default", params.get("password", ""), True)
    return Credentials("default", "", False)


@dataclass
class Request:
    """One query request: the SQL, its parameters and settings, how to answer."""

    sql: str
    params: dict[str, str]  # every URL (or form) parameter, as given
    query_params: dict[str, str] = field(default_factory=dict)  # param_<name> without prefix
    truncated: bool = False

    @property
    def database(self) -> str | None:
        return self.params.get("database") or None

    @property
    def default_format(self) -> str:
        return self.params.get("default_format") or "TabSeparated"

    @property
    def wait_end(self) -> bool:
        return self.params.get("wait_end_of_query", "0") not in ("0", "false", "")


def parse_request(
    query_string: str, headers: Headers, body: bytes, truncated: bool = False
) -> Request:
    """The query as ClickHouse assembles it: URL ``query``, a newline, the body.

    ``X-ClickHouse-Format`` and ``X-ClickHouse-Database`` request headers (the JDBC
    driver's way) stand for ``default_format`` and ``database``.
    """
    params = dict(parse_qsl(query_string, keep_blank_values=True))
    for header, name in (
        ("X-ClickHouse-Format", "default_format"),
        ("X-ClickHouse-Database", "database"),
    ):
        if headers.get(header) and name not in params:
            params[name] = str(headers.get(header))
    content_type_header = headers.get("Content-Type", "")
    sql = params.get("query", "")
    if content_type_header.lower().startswith("multipart/form-data"):
        fields = _form_fields(content_type_header, body)
        params.update(fields)
        sql = fields.get("query", sql)
    elif body:
        text = body.decode("utf-8", errors="replace")
        sql = f"{sql}\n{text}" if sql else text
    query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
    return Request(sql=sql, params=params, query_params=query_params, truncated=truncated)


def _form_fields(content_type_header: str, body: bytes) -> dict[str, str]:
    head = f"Content-Type: {content_type_header}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            raise ClickHouseError(
                48, "NOT_IMPLEMENTED", "external data (file fields) is not supported here"
            )
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            raw = payload if isinstance(payload, bytes) else b""
            fields[name] = raw.decode("utf-8", errors="replace")
    return fields
