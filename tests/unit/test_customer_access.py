"""Who may change a customer, and how often a write key may send (issue 17, part 9)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.testclient import TestClient

from pipeline.api.customer_token import TokenError, issue, verify
from pipeline.config import Settings
from pipeline.sources.collector.app import create_app as create_collector
from pipeline.sources.collector.body import BodyError, read_bounded
from pipeline.sources.collector.rate_limit import KeyRateLimiter
from pipeline.testing import ListProducer
from tests.unit.api_fakes import KNOWN, api_client

SECRET = "s3cret"
NOW = 1_800_000_000.0


def test_a_token_opens_its_customer_only() -> None:
    token = issue(SECRET, "c1", ttl_s=60, now=NOW)
    verify(SECRET, token, "c1", now=NOW + 59)
    refusals = {
        "not issued for this customer": (SECRET, token, "c2", NOW),
        "expired": (SECRET, token, "c1", NOW + 61),
        "missing": (SECRET, None, "c1", NOW),
        "malformed": (SECRET, "abc", "c1", NOW),
        "not enabled": ("", token, "c1", NOW),
    }
    for reason, (secret, tok, cid, now) in refusals.items():
        with pytest.raises(TokenError, match=reason.split()[0]):
            verify(secret, tok, cid, now=now)
    forged = f"{int(NOW) + 10**6}.{token.split('.')[1]}"  # a later expiry, the old signature
    with pytest.raises(TokenError):
        verify(SECRET, forged, "c1", now=NOW)
    with pytest.raises(TokenError, match="too far"):  # signed, but promising a year
        far = int(NOW) + 365 * 86400
        verify(SECRET, f"{far}.{issue(SECRET, 'c1', now=far - 3600).split('.')[1]}", "c1", NOW)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_tokens_never_cross_customers(a: str, b: str) -> None:
    token = issue(SECRET, a, now=NOW)
    verify(SECRET, token, a, now=NOW)
    if a != b:
        with pytest.raises(TokenError):
            verify(SECRET, token, b, now=NOW)


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    clock = [0.0]
    limiter = KeyRateLimiter(rate=2, burst=3, clock=lambda: clock[0])
    assert [limiter.retry_after("k") for _ in range(4)] == [0, 0, 0, 1]
    assert limiter.retry_after("other") == 0  # each key its own bucket
    clock[0] = 0.5  # one token back
    assert limiter.retry_after("k") == 0 and limiter.retry_after("k") == 1
    assert KeyRateLimiter(rate=0, burst=1).retry_after("k") == 0  # off


def test_collector_answers_429_with_retry_after() -> None:
    settings = Settings(write_keys="k1,k2", rate_limit_per_key=1, rate_limit_burst=2)
    auth = {"Authorization": "Basic " + base64.b64encode(b"k1:").decode()}
    other = {"Authorization": "Basic " + base64.b64encode(b"k2:").decode()}
    producer = ListProducer()
    event = {"userId": "u1", "event": "Signed Up"}
    with TestClient(create_collector(settings, producer)) as client:
        codes = [client.post("/v1/track", json=event, headers=auth).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.post("/v1/track", json=event, headers=auth)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert (
            r.json()["code"] == "rate_limited" and "CRM_RATE_LIMIT_PER_KEY" in r.json()["message"]
        )
        assert client.post("/v1/track", json=event, headers=other).status_code == 200
    assert len(producer.records) == 3  # nothing of a refused request was stored


@pytest.fixture
def api() -> Iterator[TestClient]:
    settings = Settings(read_keys="read", write_keys="write", customer_token_secret=SECRET)
    with api_client(settings) as client:
        yield client


def test_preferences_need_a_server_key_or_the_customers_token(api: TestClient) -> None:
    url, body = f"/v1/profiles/{KNOWN}/preferences", {"categories": ["shoes"]}
    write = {"Authorization": "Bearer write"}

    def put(headers: dict[str, str]) -> int:
        return api.put(url, json=body, headers=headers).status_code

    assert put({}) == 401
    assert put(write) == 403  # the public write key alone
    assert put({**write, "X-Customer-Token": issue(SECRET, "someone-else")}) == 403
    assert put({**write, "X-Customer-Token": issue(SECRET, KNOWN)}) == 202
    assert put({"Authorization": "Bearer read"}) == 202
    # no enumeration: an unknown id is refused before anyone learns whether it exists
    assert api.put("/v1/profiles/c-nobody/preferences", json=body, headers=write).status_code == 403


def _request(chunks: list[bytes], delay_s: float, length: str | None = None) -> Request:
    headers = [(b"content-length", length.encode())] if length else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    queue = list(chunks)

    async def receive() -> dict[str, object]:
        await asyncio.sleep(delay_s)
        body = queue.pop(0) if queue else b""
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    return Request(scope, receive)


def test_a_body_is_bounded_in_size_and_in_time() -> None:
    assert asyncio.run(read_bounded(_request([b"ab", b"cd"], 0), 10, 1.0)) == b"abcd"
    cases = [
        (_request([b"x" * 8] * 3, 0), 413),  # larger than the limit while streaming
        (_request([b"x"], 0, length="11"), 413),  # declared larger: refused unread
        (_request([b"x"] * 100, 0.05), 408),  # a slowloris: 5 s for 100 bytes
    ]
    for request, status in cases:
        with pytest.raises(BodyError) as caught:
            asyncio.run(read_bounded(request, 10 if status == 413 else 1000, 0.3))
        assert caught.value.status == status
