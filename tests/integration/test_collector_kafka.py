"""HTTP in, real Kafka out: keys, content, dead letters, and a broker outage."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import msgspec

from pipeline.config import REPO_ROOT, Settings
from pipeline.kafka.inspect import read_range
from pipeline.kafka.topics import wait_ready
from pipeline.transforms.identifiers import canonical
from pipeline.wire.dead_letter import from_headers

AUTH = ("it-write-key", "")


def events(settings: Settings) -> list[dict]:
    return [
        msgspec.json.decode(m.value()) | {"_key": m.key()}
        for m in read_range(settings, settings.topic("events"))
    ]


def test_events_arrive_in_kafka_keyed_with_content(settings, collector):
    skewed = datetime.now(UTC) + timedelta(hours=2)  # a client whose clock is two hours fast
    batch = [
        {
            "type": "page",
            "anonymousId": "ck-1",
            "messageId": "m1",
            "name": "home",
            "timestamp": skewed.isoformat(),
            "sentAt": skewed.isoformat(),
        },
        {
            "type": "identify",
            "anonymousId": "ck-1",
            "userId": "u-1",
            "messageId": "m2",
            "traits": {"email": "Jane@Example.com", "plan": "gold"},
        },
        {
            "type": "pos_transaction",
            "messageId": "m3",
            "transactionId": "t1",
            "storeId": "s1",
            "loyaltyId": "LC1",
            "items": [{"sku": "A", "price": 3.5, "quantity": 2}],
            "total": 7,
        },
    ]
    r = httpx.post(f"{collector}/v1/batch", json={"batch": batch}, auth=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 3
    got = {e["messageId"]: e for e in events(settings)}
    assert set(got) == {"m1", "m2", "m3"}
    assert got["m1"]["_key"] == b"anonymous_id:ck-1"
    assert got["m2"]["_key"] == b"user_id:u-1"
    assert got["m3"]["_key"] == b"loyalty_id:LC1"
    hashed = canonical("email", "jane@example.com")
    assert got["m2"]["traits"] == {"email": hashed, "plan": "gold"}
    assert got["m2"]["identities"] == {"user_id": "u-1", "anonymous_id": "ck-1", "email": hashed}
    assert "Jane" not in str(got)  # no raw PII in the log
    corrected = datetime.fromisoformat(got["m1"]["timestamp"])
    assert abs(corrected - datetime.now(UTC)) < timedelta(minutes=1)
    assert got["m3"]["items"] == [{"sku": "A", "price": 3.5, "quantity": 2}]


def test_invalid_events_land_in_the_dead_letter_topic(settings, collector):
    bad = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u",
        "properties": {"order_id": "o"},
    }
    r = httpx.post(
        f"{collector}/v1/batch", json={"batch": [{"type": "page", "userId": "u"}, bad]}, auth=AUTH
    )
    assert r.status_code == 200 and r.json()["rejected"][0]["index"] == 1
    r = httpx.post(f"{collector}/v1/track", content=b"{not json", auth=AUTH)
    assert r.status_code == 400
    letters = [
        from_headers(m.value(), m.headers())
        for m in read_range(settings, settings.topic("events.dlq"))
    ]
    by_type = {letter.error_type: letter for letter in letters}
    assert set(by_type) == {"rule", "malformed"}
    assert msgspec.json.decode(by_type["rule"].original) == bad
    assert "revenue or properties.total is required" in by_type["rule"].reason
    assert by_type["rule"].source == "batch" and by_type["rule"].index == 1
    assert by_type["malformed"].original == b"{not json"
    assert len(events(settings)) == 1


def test_broker_outage_answers_503_and_loses_nothing_acknowledged(settings, collector):
    kafka = str(REPO_ROOT / "infra" / "kafka.sh")
    acked: set[str] = set()

    def post(n: int) -> int:
        ids = [uuid.uuid4().hex for _ in range(n)]
        r = httpx.post(
            f"{collector}/v1/batch",
            auth=AUTH,
            timeout=30,
            json={"batch": [{"type": "page", "anonymousId": "a", "messageId": i} for i in ids]},
        )
        if r.status_code == 200:
            acked.update(ids)
        return r.status_code

    assert post(20) == 200
    subprocess.run([kafka, "stop"], check=True)
    try:
        assert post(20) == 503
    finally:
        subprocess.run([kafka, "start"], check=True)
        wait_ready(settings, 90)
    statuses = [post(20) for _ in range(5)]
    assert statuses[-1] == 200, statuses
    in_kafka = {e["messageId"] for e in events(settings)}
    assert acked <= in_kafka, f"acknowledged but missing: {len(acked - in_kafka)}"
