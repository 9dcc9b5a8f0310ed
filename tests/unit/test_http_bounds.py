"""Every request is bounded before it is read: the API's body, both servers' request head."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from pipeline.api.app import create_app as create_api
from pipeline.cli import main as cli
from pipeline.cli.main import bounded_http_protocol
from pipeline.config import Settings
from tests.unit.api_fakes import KNOWN, api_client

AUTH = {"Authorization": "Bearer k"}


@pytest.fixture
def api() -> Iterator[TestClient]:
    settings = Settings(read_keys="k", write_keys="k", api_max_body_bytes=4096)
    with api_client(settings) as client:
        yield client


def test_api_body_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().api_max_body_bytes == 65536
    monkeypatch.setenv("CRM_API_MAX_BODY_BYTES", "2048")
    assert Settings().api_max_body_bytes == 2048


def test_preferences_within_the_limit_are_accepted(api: TestClient) -> None:
    r = api.put(f"/v1/profiles/{KNOWN}/preferences", json={"categories": ["shoes"]}, headers=AUTH)
    assert r.status_code == 202, r.text


def test_a_declared_large_body_is_refused_unread(api: TestClient) -> None:
    r = api.put(
        f"/v1/profiles/{KNOWN}/preferences",
        content=b"x" * 50_000,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 413 and "CRM_API_MAX_BODY_BYTES" in r.json()["error"]["message"]


def test_a_streamed_body_is_read_only_up_to_the_limit() -> None:
    """50 MB sent without Content-Length: the API reads a few KB, answers 413, stops."""
    app = create_api(Settings(read_keys="k", write_keys="k", api_max_body_bytes=4096))
    read: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": len(read) < 51_200}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "PUT",
        "path": f"/v1/profiles/{KNOWN}/preferences",
        "raw_path": f"/v1/profiles/{KNOWN}/preferences".encode(),
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer k"), (b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(read) <= 5  # 4 KB limit: five 1 KB chunks at most, not 51,200


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    config = uvicorn.Config(
        _ok, host="127.0.0.1", port=0, http=bounded_http_protocol(16 * 1024), lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(5)


def _status(port: int, head: bytes, piece: int | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            if piece is None:
                s.sendall(head)
            else:
                for i in range(0, len(head), piece):
                    s.sendall(head[i : i + piece])
        except OSError:  # the server may close before the whole head is sent
            pass
        return s.recv(200).split(b"\r\n")[0]


def _request(header_bytes: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n"


def test_ordinary_headers_are_served(server_port: int) -> None:
    assert _status(server_port, _request(8000)) == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("piece", [None, 4096])
def test_a_megabyte_header_gets_431(server_port: int, piece: int | None) -> None:
    status = _status(server_port, _request(1024 * 1024), piece)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_keep_alive_requests_each_get_their_own_budget(server_port: int) -> None:
    one = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 10_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server_port), timeout=5) as s:
        replies = b""
        for _ in range(3):
            s.sendall(one)
            replies += s.recv(1000)
    assert replies.count(b"200 OK") == 3


def test_collector_and_api_are_served_with_the_bounded_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("CRM_MAX_HEADER_BYTES", "8192")
    cli.get_settings.cache_clear()
    try:
        cli._serve(_ok, "127.0.0.1", 0)  # type: ignore[arg-type]
    finally:
        cli.get_settings.cache_clear()
    protocol = seen["http"]
    assert issubclass(protocol, uvicorn.protocols.http.httptools_impl.HttpToolsProtocol)
    assert protocol.__name__ == "BoundedHttpToolsProtocol"
