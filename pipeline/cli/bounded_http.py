"""uvicorn's httptools protocol with the request head (line and headers) bounded.

httptools itself accepts any size (a 1 MB header was served); h11 has
``h11_max_incomplete_event_size`` but is the slower parser. A head larger than
``max_head_bytes`` (``CRM_MAX_HEADER_BYTES``) gets 431 and the connection is closed; at most
one more network read than the limit is ever buffered. A module-level class, so that
``crm api --workers N`` can name it to the processes uvicorn spawns.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipeline.config import get_settings


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes: int = get_settings().max_header_bytes
    _head_bytes = 0
    _in_head = True
    _oversized = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.max_head_bytes:
            self._oversized = True
            # httptools turns this into HttpParserError: uvicorn answers and closes
            raise ValueError("request head too large")
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # a read that ends inside the head belongs to it entirely
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._oversized = True
                self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._oversized:
            super().send_400_response(msg)
            return
        body = f"request line and headers exceed {self.max_head_bytes} bytes".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()
