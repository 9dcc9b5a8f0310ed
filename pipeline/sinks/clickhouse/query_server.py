"""ClickHouse's HTTP interface over the embedded store, served by the process that owns it.

chdb allows one process per store, so BI tools, ClickHouse clients and ``crm sql`` /
``crm report`` reach the store through this endpoint while the sink runs (default
``127.0.0.1:$CRM_SQL_PORT``). It speaks ClickHouse's own HTTP protocol
(``http_protocol``): clickhouse-connect, Superset's ``clickhousedb://`` SQLAlchemy
dialect, the JDBC driver and curl work unchanged. Every query runs read-only and
limited in a session of its own (``embedded_sql``, ``sql_safety``); results are the
engine's bytes in the requested format, streamed where the format allows.
"""

from __future__ import annotations

import hmac
import ipaddress
import shutil
import socket
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.sinks.clickhouse import compressed_blocks
from pipeline.sinks.clickhouse.embedded_sql import Answer, EmbeddedSql, summary, summary_header
from pipeline.sinks.clickhouse.http_protocol import (
    ClickHouseError,
    Encoder,
    Request,
    choose_encoding,
    content_type,
    credentials,
    decode_body,
    encoder,
    exception_block,
    exception_tag,
    parse_request,
)
from pipeline.sinks.clickhouse.sql_safety import Limits

log = get_logger("sql-endpoint")
MAX_BODY = 16 * 1024 * 1024  # a query (inserts are refused anyway: the rest is drained)
SPOOL_IN_MEMORY = 32 * 1024 * 1024  # wait_end_of_query results beyond this go to a temp file


def _on(flag: str | None) -> bool:
    return (flag or "0").lower() not in ("0", "false", "")


def parse_users(spec: str) -> dict[str, str]:
    """``user:password,user2:password2`` (a user without ``:`` has an empty password)."""
    users = {}
    for item in spec.split(","):
        if item.strip():
            name, _, password = item.strip().partition(":")
            users[name] = password
    return users


class Gate:
    """Who may query: configured users, and loopback clients without credentials if trusted."""

    def __init__(self, users: dict[str, str], loopback_trust: bool) -> None:
        self.users, self.loopback_trust = users, loopback_trust

    def check(self, peer: str, headers: Any, params: dict[str, str]) -> None:
        cred = credentials(headers, params)
        anonymous = not cred.given or (cred.user == "default" and cred.password == "")
        if anonymous and self.loopback_trust and ipaddress.ip_address(peer).is_loopback:
            return
        known = self.users.get(cred.user)
        if known is not None and hmac.compare_digest(known.encode(), cred.password.encode()):
            return
        raise ClickHouseError(
            516,
            "AUTHENTICATION_FAILED",
            f"{cred.user}: Authentication failed: password is incorrect, "
            "or there is no user with such name",
        )


def serve(settings: Settings) -> ThreadingHTTPServer:
    """Start the endpoint on a thread of this (the store-owning) process."""
    engine = EmbeddedSql(settings.clickhouse_dsn.removeprefix("chdb://"), Limits.of(settings))
    gate = Gate(parse_users(settings.sql_users.get_secret_value()), settings.sql_loopback_trust)
    display_name = socket.gethostname()

    class Handler(ClickHouseHandler):
        pass

    Handler.engine, Handler.gate, Handler.display_name = engine, gate, display_name
    server = ThreadingHTTPServer((settings.sql_host, settings.sql_port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sql-endpoint", daemon=True).start()
    log.info("SQL endpoint (ClickHouse HTTP)", host=settings.sql_host, port=settings.sql_port)
    return server


class ClickHouseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "crm-embedded-clickhouse"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection or a stalled reader is dropped
    engine: EmbeddedSql
    gate: Gate
    display_name: str

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._plain(200, b"")

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- one request -----------------------------------------------------------------

    def _serve(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        if path == "/ping":
            self._plain(200, b"Ok.\n")
            return
        body, truncated = self._read_body()
        if path not in ("", "/"):
            self._plain(404, f"There is no handle {url.path}\n\nUse / or /ping\n".encode())
            return
        query_id = str(uuid.uuid4())
        try:
            flags = dict(parse_qsl(url.query))
            if not truncated:
                body = decode_body(body, self.headers.get("Content-Encoding", ""))
                if _on(flags.get("decompress")):
                    body = compressed_blocks.decode_blocks(body)
            if _on(flags.get("compress")) and not compressed_blocks.available():
                raise ClickHouseError(
                    48,
                    "NOT_IMPLEMENTED",
                    "compress=1 needs clickhouse-cityhash (pip install 'crm-pipeline[embedded]')",
                )
            req = parse_request(url.query, self.headers, body, truncated)
            query_id = req.params.get("query_id") or query_id
            if not req.sql.strip():
                self._plain(200, b"Ok.\n")
                return
            self.gate.check(self.client_address[0], self.headers, req.params)
            if req.truncated:
                self.engine.vet_only(req.sql[:MAX_BODY], req.params)
                raise ClickHouseError(62, "SYNTAX_ERROR", "Max query size exceeded")
            answer = self.engine.run(
                req.sql,
                req.params,
                req.query_params,
                req.default_format,
                req.database,
                stream=True,
            )
        except ClickHouseError as err:
            self._error(err, query_id)
            return
        except Exception as exc:  # a bug here, not the query's fault: still answer
            log.exception("SQL endpoint request failed")
            self._error(ClickHouseError(1001, "STD_EXCEPTION", repr(exc)), query_id)
            return
        try:
            self._answer(req, answer, query_id)
        except Exception:
            log.exception("SQL endpoint response failed")
            self.close_connection = True
        finally:
            answer.close()

    def _read_body(self) -> tuple[bytes, bool]:
        """The request body (Content-Length or chunked), the part beyond MAX_BODY drained."""
        parts: list[bytes] = []
        kept = 0
        truncated = False

        def take(data: bytes) -> None:
            nonlocal kept, truncated
            room = MAX_BODY - kept
            if len(data) > room:
                truncated = True
            if room > 0:
                parts.append(data[:room])
                kept += min(len(data), room)

        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                take(self.rfile.read(size))
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, 1024 * 1024))
                if not data:
                    break
                left -= len(data)
                take(data)
        return b"".join(parts), truncated

    # -- responses -------------------------------------------------------------------

    def _common(self, query_id: str) -> None:
        self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Timezone", self.engine.timezone)
        self.send_header("X-ClickHouse-Server-Display-Name", self.display_name)
        self.send_header("Keep-Alive", f"timeout={self.timeout}")

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, err: ClickHouseError, query_id: str) -> None:
        body = f"{err.text} (version {self.engine.version})\n".encode()
        self.send_response(err.status)
        self._common(query_id)
        self.send_header("X-ClickHouse-Exception-Code", str(err.code))
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _encoding(self, req: Request) -> tuple[str | None, Encoder | None]:
        if _on(req.params.get("compress")):  # ClickHouse's own blocks, no Content-Encoding
            return None, compressed_blocks.BlockEncoder()
        enabled = req.params.get("enable_http_compression", "1") not in ("0", "false")
        name = choose_encoding(self.headers.get("Accept-Encoding", "")) if enabled else None
        if name is None:
            return None, None
        level = req.params.get("http_zlib_compression_level", "3")
        return name, encoder(name, int(level) if level.isdigit() else 3)

    def _head(self, answer: Answer, query_id: str, encoding: str | None) -> None:
        self.send_response(200)
        self._common(query_id)
        self.send_header("X-ClickHouse-Format", answer.fmt)
        self.send_header("Content-Type", content_type(answer.fmt))
        if encoding:
            self.send_header("Content-Encoding", encoding)

    def _answer(self, req: Request, answer: Answer, query_id: str) -> None:
        encoding, enc = self._encoding(req)
        pack = (lambda data: enc.compress(data)) if enc else (lambda data: data)
        try:
            if answer.body is not None:
                data = pack(answer.body) + (enc.flush() if enc else b"")
                self._head(answer, query_id, encoding)
                self.send_header("X-ClickHouse-Summary", summary_header(answer.summary))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif req.wait_end:
                self._spooled(answer, query_id, encoding, enc)
            else:
                self._streamed(answer, query_id, encoding, enc)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away: stop reading the engine

    def _spooled(
        self, answer: Answer, query_id: str, encoding: str | None, enc: Encoder | None
    ) -> None:
        """``wait_end_of_query=1``: the whole result first (errors get a status), then sent."""
        assert answer.blocks is not None
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            try:
                for block in answer.blocks:
                    spool.write(enc.compress(block) if enc else block)
            except ClickHouseError as err:
                self._error(err, query_id)
                return
            if enc:
                spool.write(enc.flush())
            size = spool.tell()
            spool.seek(0)
            self._head(answer, query_id, encoding)
            self.send_header("X-ClickHouse-Summary", summary_header(answer.blocks.summary()))
            self.send_header("Content-Length", str(size))
            self.end_headers()
            shutil.copyfileobj(spool, self.wfile, 1024 * 1024)

    def _streamed(
        self, answer: Answer, query_id: str, encoding: str | None, enc: Encoder | None
    ) -> None:
        """Blocks as the engine produces them, chunked; a late failure is tagged in-stream."""
        assert answer.blocks is not None
        blocks = iter(answer.blocks)
        try:
            first = next(blocks, b"")
        except ClickHouseError as err:
            self._error(err, query_id)
            return
        tag = exception_tag()
        self._head(answer, query_id, encoding)
        self.send_header("X-ClickHouse-Summary", summary_header(summary()))
        self.send_header("X-ClickHouse-Exception-Tag", tag)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(data: bytes) -> None:
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        try:
            chunk(enc.compress(first) if enc else first)
            for block in blocks:
                chunk(enc.compress(block) if enc else block)
        except ClickHouseError as err:
            text = f"{err.text} (version {self.engine.version})"
            block = exception_block(tag, text)
            chunk(enc.compress(block) if enc else block)
            self.close_connection = True
        if enc:
            chunk(enc.flush())
        self.wfile.write(b"0\r\n\r\n")
