import base64
import gzip

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pipeline.config import Settings
from pipeline.sources.collector.app import create_app
from pipeline.testing import ListProducer

AUTH = {"Authorization": "Basic " + base64.b64encode(b"k1:").decode()}


@pytest.fixture
def producer():
    return ListProducer()


@pytest.fixture
def client(producer):
    settings = Settings(
        write_keys="k1,k2", max_event_bytes=2000, max_batch_bytes=20_000, topic_prefix="t."
    )
    with TestClient(create_app(settings, producer)) as c:
        yield c


def test_track_is_published_keyed_by_strongest_identifier(client, producer):
    r = client.post(
        "/v1/track", json={"userId": "u1", "anonymousId": "a", "event": "Signed Up"}, headers=AUTH
    )
    assert r.status_code == 200 and r.json() == {"success": True, "accepted": 1, "rejected": []}
    (rec,) = producer.records
    assert rec.topic == "t.events" and rec.key == b"user_id:u1"
    body = msgspec.json.decode(rec.value)
    assert body["type"] == "track" and body["receivedAt"] and body["messageId"].startswith("gen-")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()},
        {"Authorization": "Basic !!!"},
    ],
)
def test_write_key_is_required(client, producer, headers):
    r = client.post("/v1/track", json={"userId": "u", "event": "x"}, headers=headers)
    assert r.status_code == 401
    assert producer.records == []


def test_write_key_in_body_like_analytics_js(client, producer):
    r = client.post(
        "/v1/batch",
        content=msgspec.json.encode(
            {"writeKey": "k2", "batch": [{"type": "page", "anonymousId": "a"}]}
        ),
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 200 and len(producer.records) == 1


def test_batch_accepts_valid_and_reports_invalid_by_index(client, producer):
    r = client.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "page", "anonymousId": "a"},
                {"type": "track", "anonymousId": "a"},
                {"type": "identify", "userId": "u", "traits": {"email": "bad", "plan": "pro"}},
            ]
        },
        headers=AUTH,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert [(x["index"], x["type"]) for x in body["rejected"]] == [(1, "schema")]
    # an invalid email drops that trait, not the identify
    (warning,) = body["warnings"]
    assert warning["index"] == 2 and warning["message"].startswith("traits.email dropped")
    published = [msgspec.json.decode(r.value) for r in producer.on(".events")]
    assert published[1]["traits"] == {"plan": "pro"} and published[1]["userId"] == "u"
    dlq = producer.on(".events.dlq")
    assert len(dlq) == 1
    headers = dict(dlq[0].headers or [])
    assert headers["crm.error.index"] == b"1" and b"event" in headers["crm.error.reason"]
    assert msgspec.json.decode(dlq[0].value) == {"type": "track", "anonymousId": "a"}


def test_malformed_body_is_400_and_dead_lettered(client, producer):
    r = client.post("/v1/batch", content=b'{"batch": [', headers=AUTH)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    (rec,) = producer.records
    assert rec.topic == "t.events.dlq" and rec.value == b'{"batch": ['


def test_all_invalid_batch_is_400(client):
    r = client.post("/v1/batch", json={"batch": [{"type": "nope"}]}, headers=AUTH)
    assert r.status_code == 400 and r.json()["rejected"][0]["index"] == 0


def test_single_invalid_event_is_400_with_reason(client, producer):
    r = client.post("/v1/page", json={"name": "home"}, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "page: one of userId or anonymousId is required"
    assert len(producer.on(".events.dlq")) == 1


def test_oversized_body_is_413_and_oversized_event_is_rejected(client, producer):
    r = client.post("/v1/batch", content=b"x" * 30_000, headers=AUTH)
    assert r.status_code == 413
    big = {"type": "track", "userId": "u", "event": "x", "properties": {"blob": "y" * 3000}}
    r = client.post(
        "/v1/batch", json={"batch": [big, {"type": "page", "userId": "u"}]}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["rejected"][0]["type"] == "too_large"
    r = client.post("/v1/track", json=big, headers=AUTH)
    assert r.status_code == 413


def test_gzip_bodies_are_accepted_and_gzip_bombs_are_413(client, producer):
    body = gzip.compress(msgspec.json.encode({"batch": [{"type": "page", "userId": "u"}]}))
    r = client.post("/v1/batch", content=body, headers={**AUTH, "content-encoding": "gzip"})
    assert r.status_code == 200
    bomb = gzip.compress(b"[" + b" " * 200_000 + b"]")
    r = client.post("/v1/batch", content=bomb, headers={**AUTH, "content-encoding": "gzip"})
    assert r.status_code == 413


def test_kafka_unavailable_is_503_and_nothing_is_acknowledged():
    settings = Settings(write_keys="k1")
    with TestClient(create_app(settings, ListProducer(fail=True))) as c:
        r = c.post("/v1/track", json={"userId": "u", "event": "x"}, headers=AUTH)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["success"] is False


def test_cors_preflight_for_browser_trackers(client):
    r = client.options(
        "/v1/batch",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def test_sendgrid_webhook_and_pos_array(client, producer):
    r = client.post(
        "/v1/webhooks/sendgrid",
        json=[
            {"email": "a@b.co", "event": "open", "timestamp": 1700000000, "sg_event_id": "e1"},
            {"email": "a@b.co", "event": "weird", "timestamp": 1700000000},
        ],
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1 and len(r.json()["rejected"]) == 1
    pos = {
        "transactionId": "t1",
        "storeId": "s1",
        "loyaltyId": "LC1",
        "items": [{"sku": "a", "price": 1}],
        "total": 1,
    }
    r = client.post("/v1/pos/transactions", json=[pos, pos], headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 2
    keys = {rec.key for rec in producer.on(".events")}
    assert b"loyalty_id:LC1" in keys


def test_openapi_document_lists_every_endpoint(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for path in [
        "/v1/track",
        "/v1/batch",
        "/v1/webhooks/sendgrid",
        "/v1/pos/transactions",
        "/v1/cookie-sync",
        "/v1/consent",
        "/v1/support",
    ]:
        assert path in doc["paths"]
    assert "PosTransaction" in doc["components"]["schemas"]


def test_metrics_endpoint(client):
    client.post("/v1/track", json={"userId": "u", "event": "x"}, headers=AUTH)
    text = client.get("/metrics").text
    assert "crm_events_in_total" in text and "crm_http_request_duration_seconds" in text


DEEP = "{" + '"a":{' * 1000 + "}" * 1001


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/page", b'{"type":"page","anonymousId":"a\xff","name":"x"}', "invalid UTF-8"),
        ("/v1/batch", b'{"batch":[{"type":"page","anonymousId":"\xfe"}]}', "invalid UTF-8"),
        ("/v1/track", ('{"event":"e","userId":"u","properties":' + DEEP + "}").encode(), "deep"),
        ("/v1/batch", ('{"batch":[{"type":"track","properties":' + DEEP + "}]}").encode(), "deep"),
        ("/v1/webhooks/sendgrid", b'[{"email":"\xff"}]', "invalid UTF-8"),
    ],
)
def test_bytes_that_are_not_json_get_a_400_and_a_dead_letter_never_a_500(
    producer, path, body, message
):
    settings = Settings(write_keys="k1", topic_prefix="t.")  # default size limits
    with TestClient(create_app(settings, producer)) as client:
        r = client.post(path, content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and message in r.text, r.text
    (letter,) = [rec for rec in producer.records if rec.topic == "t.events.dlq"]
    assert letter.value in body  # the whole body, or in a batch the one bad event


def test_properties_nested_deeper_than_the_limit_are_rejected_with_the_reason(client, producer):
    props: dict = {}
    cur = props
    for _ in range(40):
        cur["a"] = {}
        cur = cur["a"]
    r = client.post(
        "/v1/track", json={"event": "e", "userId": "u", "properties": props}, headers=AUTH
    )
    assert r.status_code == 400 and "nested deeper than 32" in r.text


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "page", "identify", "screen", "alias", "group", "x"]),
        "userId": st.text(max_size=300) | st.integers(),
        "anonymousId": st.text(max_size=10),
        "event": st.text(max_size=300),
        "timestamp": st.text(max_size=30) | st.datetimes().map(lambda d: d.isoformat() + "Z"),
        "properties": json_values,
        "traits": json_values,
        "context": json_values,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["/v1/batch", "/v1/track", "/v1/page", "/v1/identify", "/v1/pos/transactions"]),
    st.one_of(
        st.binary(max_size=300),
        envelopes.map(lambda e: msgspec.json.encode(e)),
        st.lists(envelopes, max_size=5).map(lambda b: msgspec.json.encode({"batch": b})),
    ),
)
def test_no_payload_gets_a_server_error(client, path, body):
    r = client.post(path, content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300])


def test_analytics_js_short_routes_take_text_plain_bodies_with_the_key_inside(client, producer):
    for route, kind in [("/v1/t", "track"), ("/v1/p", "page"), ("/v1/i", "identify")]:
        body = {"type": kind, "anonymousId": "anon-1", "writeKey": "k1", "event": "Clicked"}
        r = client.post(
            route, content=msgspec.json.encode(body), headers={"content-type": "text/plain"}
        )
        assert r.status_code == 200, (route, r.text)
    batch = {
        "writeKey": "k2",
        "sentAt": "2026-11-24T10:00:00Z",
        "batch": [{"type": "page", "anonymousId": "anon-1", "name": "Home"}],
    }
    r = client.post(
        "/v1/b", content=msgspec.json.encode(batch), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 200, r.text
    kinds = [msgspec.json.decode(rec.value)["type"] for rec in producer.records]
    assert kinds == ["track", "page", "identify", "page"]
    bad = {"type": "track", "anonymousId": "a", "writeKey": "nope", "event": "x"}
    assert client.post("/v1/t", content=msgspec.json.encode(bad)).status_code == 401


def test_rudderstack_beacon_with_the_key_in_the_query_and_an_empty_user_id(client, producer):
    batch = {"batch": [{"type": "track", "event": "Viewed", "anonymousId": "a-9", "userId": ""}]}
    r = client.post("/beacon/v1/batch?writeKey=k1", content=msgspec.json.encode(batch))
    assert r.status_code == 200, r.text
    (rec,) = producer.records
    doc = msgspec.json.decode(rec.value)
    assert "userId" not in doc and doc["identities"] == {"anonymous_id": "a-9"}


def test_browser_preflights_for_the_headers_sdks_send_are_allowed(client):
    r = client.options(
        "/v1/batch",
        headers={
            "origin": "https://shop.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,anonymousid,sentat",
        },
    )
    assert r.status_code == 200, r.text


def test_analytics_js_settings_point_delivery_at_this_collector(client):
    r = client.get("/v1/projects/k1/settings")
    assert r.status_code == 200
    segment = r.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == "k1" and segment["apiHost"].endswith("/v1")
    assert client.get("/v1/projects/unknown/settings").status_code == 404


@pytest.mark.parametrize("path", ["/v1/group", "/v1/g"])
def test_group_is_a_call_of_its_own(client, producer, path):
    body = {"userId": "u1", "groupId": "acme", "traits": {"plan": "pro", "email": "Ops@Acme.io"}}
    r = client.post(path, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    (rec,) = producer.records
    published = msgspec.json.decode(rec.value)
    assert published["type"] == "group" and published["groupId"] == "acme"
    # a group's contact email is hashed like any email, and identifies nobody
    assert published["traits"]["plan"] == "pro" and len(published["traits"]["email"]) == 64
    assert published["identities"] == {"user_id": "u1"}


def test_batch_context_integrations_and_unknown_fields_survive(client, producer):
    r = client.post(
        "/v1/batch",
        json={
            "batch": [
                {
                    "type": "screen",
                    "userId": "u1",
                    "name": "Home",
                    "category": "Main",
                    "properties": {"tab": 2},
                    "channel": "mobile",
                    "context": {"app": {"version": "1.2"}},
                    "writeKey": "k1",
                }
            ],
            "context": {"library": {"name": "mobile-sdk"}, "app": {"version": "0"}},
            "integrations": {"All": True},
        },
        headers={
            **AUTH,
            "User-Agent": "MyApp/1.2 (iPhone; iOS 17.1)",
            "X-Forwarded-For": "1.2.3.4",
        },
    )
    assert r.status_code == 200, r.text
    published = msgspec.json.decode(producer.records[0].value)
    assert published["category"] == "Main" and published["properties"] == {"tab": 2}
    assert published["channel"] == "mobile"  # not in the contract: kept verbatim
    assert "writeKey" not in published  # a secret is never archived
    ctx = published["context"]
    assert ctx["app"] == {"version": "1.2"} and ctx["library"] == {"name": "mobile-sdk"}
    assert ctx["userAgent"].startswith("MyApp") and "userAgentParsed" in ctx
    # no trusted proxy header configured: the TCP peer, not what the client claims
    assert ctx["ip"] != "1.2.3.4"
    assert published["integrations"] == {"All": True}


def test_errors_carry_code_and_message_where_sdks_read_them(client, producer):
    r = client.post("/v1/track", json={"userId": "u1"}, headers=AUTH)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "schema" and "event" in body["message"]
    assert body["error"] == {"type": "schema", "message": body["message"]}
    r = client.post("/v1/track", json={"userId": "u1", "event": "x"})
    assert r.status_code == 401 and r.json()["code"] == "request"


def test_trusted_proxy_header_and_truncation(producer):
    settings = Settings(
        write_keys="k1",
        topic_prefix="t.",
        trusted_ip_header="X-Forwarded-For",
        ip_capture="truncated",
    )
    with TestClient(create_app(settings, producer)) as c:
        r = c.post(
            "/v1/page",
            json={"anonymousId": "a"},
            headers={**AUTH, "X-Forwarded-For": "198.51.100.7, 10.0.0.1"},
        )
    assert r.status_code == 200
    assert msgspec.json.decode(producer.records[0].value)["context"]["ip"] == "198.51.100.0"
