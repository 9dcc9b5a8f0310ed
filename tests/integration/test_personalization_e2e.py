"""Segments and personalization against the real broker, Redis and embedded ClickHouse.

A profile change moves a customer into a segment; the entry is in Kafka, Redis
and ClickHouse; the personalization answer follows it; revoked consent removes
the customer from marketing segments and personalized content; an event-time
timer moves a customer into a "lapsed" segment without any event of theirs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from confluent_kafka import Consumer

from pipeline.api.customer_token import issue
from pipeline.cli.processes import crm_process, http_service
from pipeline.config import Settings
from pipeline.sinks.clickhouse.access import query as open_query
from pipeline.stores.segments_redis import SegmentReader
from pipeline.wire.change import Change
from tests.integration.conftest import free_port, wait_for

WRITE = ("it-write-key", "")
READ = {"Authorization": "Bearer it-read-key"}
WRITE_BEARER = {"Authorization": "Bearer it-write-key"}
SECRET = "it-customer-token-secret"

SEGMENTS = """
segments:
  - name: big-spenders
    consent: email_marketing
    when: {field: purchases.revenue, gte: 100}
  - name: lapsed-30d
    when: {field: purchases.last_purchase, older_than: 30d}
"""
PERSONALIZATION = """
slots:
  hero:
    default: generic
    preferences: {beauty: hero-beauty}
    rules:
      - name: vip
        when: {field: segments, contains: big-spenders}
        content: vip-banner
"""


@pytest.fixture
def stack(ch_settings: tuple[Settings, dict[str, str]], tmp_path: Path) -> Iterator[dict[str, Any]]:
    (tmp_path / "segments.yaml").write_text(SEGMENTS)
    (tmp_path / "personalization.yaml").write_text(PERSONALIZATION)
    s, base_env = ch_settings
    env = {
        **base_env,
        "CRM_SEGMENTS_RULES": str(tmp_path / "segments.yaml"),
        "CRM_PERSONALIZATION_RULES": str(tmp_path / "personalization.yaml"),
        "CRM_SEGMENT_TICK_S": "0.5",
        "CRM_RULES_RELOAD_S": "0.5",
        "CRM_CUSTOMER_TOKEN_SECRET": SECRET,
    }
    cport, aport = free_port(), free_port()
    with (
        crm_process(["worker", "--name", "a"], None, tmp_path / "worker.log", env=env),
        crm_process(["sink", "clickhouse"], None, tmp_path / "sink.log", env=env),
        http_service("collector", cport, tmp_path / "collector.log", env),
        http_service("api", aport, tmp_path / "api.log", env),
    ):
        yield {
            "segments_file": tmp_path / "segments.yaml",
            "settings": s,
            "collector": f"http://127.0.0.1:{cport}",
            "api": f"http://127.0.0.1:{aport}",
        }


def pos(loyalty: str, tid: str, total: float, at: datetime | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "transactionId": tid,
        "storeId": "vilnius-01",
        "loyaltyId": loyalty,
        "items": [{"sku": "S-1", "category": "shoes", "price": total}],
        "total": total,
    }
    if at is not None:
        doc["timestamp"] = at.isoformat()
    return doc


def kafka_changes(s: Settings, customer_id: str, want: int) -> list[Change]:
    consumer = Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": f"it-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([s.topic("segments.changes")])
    decoder = msgspec.json.Decoder(Change)
    got: list[Change] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(got) < want:
            for msg in consumer.consume(100, 0.5):
                if msg.error() is None and msg.key() == customer_id.encode():
                    got.append(decoder.decode(msg.value() or b"{}"))
    finally:
        consumer.close()
    return got


def test_profile_changes_move_segments_kafka_clickhouse_and_personalization(stack):
    s: Settings = stack["settings"]
    c, api = stack["collector"], stack["api"]
    card = f"LC-{uuid.uuid4().hex[:6]}"
    reader = SegmentReader(redis.Redis.from_url(s.redis_url), s.redis_prefix)

    def hero() -> dict[str, Any]:
        r = httpx.get(f"{api}/v1/personalize/by/loyalty_id/{card}?slot=hero", headers=READ)
        assert r.status_code == 200, r.text
        return dict(r.json())

    assert hero()["slots"]["hero"]["reason"] == "unknown visitor"
    assert httpx.post(f"{c}/v1/pos/transactions", auth=WRITE, json=pos(card, "t1", 50)).is_success
    first = wait_for(hero, lambda a: a["known"], what="profile in Redis")
    cid = first["customer_id"]
    assert first["slots"]["hero"]["content"] == "generic" and first["segments"] == []
    assert first["loyalty"]["stage"] == "customer"

    # a second purchase crosses the threshold: the customer enters big-spenders
    assert httpx.post(f"{c}/v1/pos/transactions", auth=WRITE, json=pos(card, "t2", 80)).is_success
    vip = wait_for(hero, lambda a: a["slots"]["hero"]["content"] == "vip-banner", what="vip")
    assert vip["slots"]["hero"]["source"] == "rule" and vip["segments"] == ["big-spenders"]
    assert vip["loyalty"]["stage"] == "client"
    assert reader.is_member("big-spenders", cid)

    # revoking marketing consent: out of the marketing segment, the answer follows
    consent = {"loyaltyId": card, "purpose": "email_marketing", "status": "revoked"}
    assert httpx.post(f"{c}/v1/consent", auth=WRITE, json=consent).is_success
    wait_for(hero, lambda a: a["slots"]["hero"]["content"] == "generic", what="exit on consent")
    assert not reader.is_member("big-spenders", cid)

    # stated preferences through the preference centre win: the browser holds the public
    # write key and a token the site issued for this customer only
    prefs = f"{api}/v1/profiles/{cid}/preferences"
    mine = {**WRITE_BEARER, "X-Customer-Token": issue(SECRET, cid)}
    r = httpx.put(prefs, headers=WRITE_BEARER, json={"categories": ["beauty"]})
    assert r.status_code == 403 and "X-Customer-Token" in r.text  # the write key alone
    theirs = {**WRITE_BEARER, "X-Customer-Token": issue(SECRET, "c-someone-else")}
    assert httpx.put(prefs, headers=theirs, json={"categories": ["beauty"]}).status_code == 403
    r = httpx.put(prefs, headers=mine, json={"categories": ["beauty"]})
    assert r.status_code == 202, r.text
    pref = wait_for(hero, lambda a: a["slots"]["hero"]["source"] == "preference", what="prefs")
    assert pref["slots"]["hero"]["content"] == "hero-beauty"
    bad = httpx.put(prefs, headers=READ, json={"x": 1})  # a server-side key needs no token
    assert bad.status_code == 400 and "unknown field" in bad.json()["error"]["message"]
    assert httpx.put(prefs, json={"categories": ["beauty"]}).status_code == 401
    huge = b'{"categories": ["' + b"x" * 5_000_000 + b'"]}'  # answered without reading it all
    r = httpx.put(prefs, headers=mine, content=huge)
    assert r.status_code == 413, r.text

    # without personalization consent: default content, with the reason
    off = {"loyaltyId": card, "purpose": "personalization", "status": "revoked"}
    assert httpx.post(f"{c}/v1/consent", auth=WRITE, json=off).is_success
    none = wait_for(hero, lambda a: a["slots"]["hero"]["source"] == "consent", what="consent")
    assert none["slots"]["hero"]["content"] == "generic"

    # every transition is on Kafka and in ClickHouse, once
    changes = kafka_changes(s, cid, want=5)
    seen = {(ch.kind, ch.name, ch.action) for ch in changes}
    assert {("segment", "big-spenders", "enter"), ("segment", "big-spenders", "exit")} <= seen
    assert ("stage", "client", "change") in seen

    def ch_rows() -> tuple[bool, Any]:
        rows = query(
            s,
            "SELECT kind, name, action FROM segment_changes FINAL "
            f"WHERE customer_id = '{cid}' ORDER BY version, kind, name",
        )["rows"]
        return len(rows) >= len({ch.change_id for ch in changes}), rows

    rows = wait_for(ch_rows, lambda r: r[0], what="ClickHouse segment_changes")[1]
    assert ["segment", "big-spenders", "enter"] in [list(r) for r in rows]
    assert ["segment", "big-spenders", "exit"] in [list(r) for r in rows]
    members = query(s, f"SELECT count() FROM segment_members WHERE customer_id = '{cid}'")
    assert members["rows"][0][0] == 0  # entered and left


def test_event_time_timer_moves_a_silent_customer_into_a_segment(stack):
    s: Settings = stack["settings"]
    c = stack["collector"]
    reader = SegmentReader(redis.Redis.from_url(s.redis_url), s.redis_prefix)
    card = f"LC-{uuid.uuid4().hex[:6]}"
    # bought 30 days minus 4 seconds ago: lapsed-30d is due in 4 seconds of event time
    at = datetime.now(UTC) - timedelta(days=30) + timedelta(seconds=4)
    assert httpx.post(
        f"{c}/v1/pos/transactions", auth=WRITE, json=pos(card, "old", 20, at)
    ).is_success
    api = stack["api"]
    found = wait_for(
        lambda: httpx.get(f"{api}/v1/profiles/by/loyalty_id/{card}", headers=READ),
        lambda r: r.status_code == 200,
        what="profile",
    ).json()
    cid = found["customer_id"]
    assert "lapsed-30d" not in found["segments"]
    time.sleep(5)
    # any event from anyone advances the stream's event-time clock past the due time
    page = {"type": "page", "anonymousId": f"ck-{uuid.uuid4().hex[:6]}", "name": "home"}
    assert httpx.post(f"{c}/v1/batch", auth=WRITE, json={"batch": [page]}).is_success
    wait_for(
        lambda: reader.is_member("lapsed-30d", cid), bool, timeout=30, what="timer-driven entry"
    )
    profile = httpx.get(f"{api}/v1/profiles/{cid}", headers=READ).json()
    assert profile["segments"] == ["lapsed-30d"]

    # the running worker picks up an edited segment file; a broken edit changes nothing
    stack["segments_file"].write_text(SEGMENTS + "  - name: broken\n    when: {field: x}\n")
    time.sleep(1.5)
    stack["segments_file"].write_text(
        SEGMENTS + "  - name: store-buyers\n    when: {field: purchases.orders, gte: 2}\n"
    )
    time.sleep(1.5)
    assert httpx.post(f"{c}/v1/pos/transactions", auth=WRITE, json=pos(card, "new", 20)).is_success
    wait_for(lambda: reader.is_member("store-buyers", cid), bool, timeout=30, what="reload")
    assert not reader.is_member("lapsed-30d", cid)  # a purchase today: no longer lapsed


def query(s: Settings, sql: str) -> dict[str, Any]:
    """Through the running sink only: the test process must never take the store's lock."""
    return open_query(s, sql, open_store=False)
