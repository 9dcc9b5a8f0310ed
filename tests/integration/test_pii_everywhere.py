"""No plain email or phone a run sent lands anywhere: Kafka, Redis, ClickHouse.

Events carry one known email and phone in every place a client puts them (traits spelled
otherwise, properties, a page URL's query string, userId and alias previousId, unknown
top-level fields), valid and invalid, malformed bodies and a SendGrid ``deferred`` item.
Through a running collector, worker and ClickHouse sink, every record, key, header, row
and Redis key and value is then searched for the plain values (case-insensitive).
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from pipeline.cli.processes import crm_process, http_service
from pipeline.config import Settings
from pipeline.kafka.inspect import read_range
from pipeline.sinks.clickhouse.access import query as open_query
from pipeline.stores.redis_client import sync_redis
from pipeline.transforms.identifiers import canonical
from pipeline.wire.keys import RedisKeys
from tests.integration.conftest import free_port, wait_until

AUTH = ("it-write-key", "")
SALT = "it-pepper"


def _query(s: Settings, sql: str) -> list[list[Any]]:
    return list(open_query(s, sql, open_store=False)["rows"])


def _payloads(email: str, email2: str, phone: str) -> dict[str, Any]:
    enc = email.replace("@", "%40")
    page = {
        "url": f"https://shop.example/welcome?email={enc}&utm_source=news",
        "search": f"?email={enc}&utm_source=news",
        "referrer": f"https://mail.example/read?to={email}",
    }
    now = time.time()
    batch = [
        {
            "type": "identify",
            "userId": email,
            "traits": {"E-mail": email.upper(), "Phone": phone, "name": "Jane"},
            "context": {"page": page},
        },
        {
            "type": "track",
            "event": "Signed Up",
            "userId": email,
            "properties": {"email": email, "phone": phone, "url": f"https://s.example/?e={email}"},
            "context": {"page": page},
            "contact": {"mobile": phone},  # an unknown top-level field
        },
        {"type": "alias", "userId": email, "previousId": email2},
        {"type": "page", "anonymousId": "ck-pii", "properties": {"Mobile": phone}},
        # invalid: no identifier at all, an invalid phone on a channel event, unknown type
        {"type": "identify", "traits": {"email": email, "phone": phone}},
        {"type": "consent", "email": email, "phone": f"{phone} ext", "purpose": "sms"},
        {"type": "pageview", "email": email, "phone": phone},
    ]
    sendgrid = [
        {"email": email, "event": "deferred", "timestamp": int(now), "response": f"<{email}>"},
        {"email": email, "event": "delivered", "timestamp": int(now), "sg_event_id": "e1"},
    ]
    return {"batch": batch, "sendgrid": sendgrid}


def _kafka_texts(s: Settings) -> list[bytes]:
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(s.topic_prefix)]
    out: list[bytes] = []
    for topic in topics:
        for m in read_range(s, topic):
            out += [m.key() or b"", m.value() or b""]
            out += [k.encode() + v for k, v in m.headers() or []]
    return out


def _redis_texts(s: Settings) -> list[bytes]:
    r = sync_redis(s)
    out: list[bytes] = []
    for key in r.scan_iter(f"{s.redis_prefix}*", count=1000):
        out.append(key)
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key) or b"")
        elif kind == b"hash":
            out += [k + b"=" + v for k, v in r.hgetall(key).items()]
        elif kind == b"set":
            out += list(r.smembers(key))
        elif kind == b"zset":
            out += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            out += r.lrange(key, 0, -1)
        else:
            out.append(repr(r.dump(key)).encode())
    return out


def test_no_plain_email_or_phone_in_kafka_redis_or_clickhouse(ch_settings, tmp_path):
    s, env = ch_settings
    env = {**env, "CRM_PII_SALT": SALT, "CRM_HASH_PII": "true"}
    tag = uuid.uuid4().hex[:10]
    email, email2 = f"Pii.{tag}@Example.org", f"anon.{tag}@example.net"
    phone = f"+44 20 7946 {int(tag[:6], 16) % 9000 + 1000}"
    digits = phone.replace(" ", "").lstrip("+")
    needles = [email.lower(), email.split("@")[0].lower(), email2.split("@")[0].lower()]
    needles += [digits, phone[-9:]]  # normalised and as typed ("7946 1234")
    sent = _payloads(email, email2, phone)
    cport = free_port()
    with ExitStack() as stack:
        stack.enter_context(
            crm_process(["worker", "--name", "a"], None, tmp_path / "worker.log", env=env)
        )
        stack.enter_context(
            crm_process(["sink", "clickhouse"], None, tmp_path / "sink.log", env=env)
        )
        stack.enter_context(http_service("collector", cport, tmp_path / "collector.log", env))
        base = f"http://127.0.0.1:{cport}"
        r = httpx.post(f"{base}/v1/batch", json={"batch": sent["batch"]}, auth=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
        assert len(r.json()["rejected"]) == 3
        r = httpx.post(f"{base}/v1/webhooks/sendgrid", json=sent["sendgrid"], auth=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        malformed = f'{{"batch": [{{"userId": "{email}", "traits": {{"phone": "{phone}"'
        r = httpx.post(f"{base}/v1/batch", content=malformed.encode(), auth=AUTH)
        assert r.status_code == 400
        r = httpx.post(
            f"{base}/v1/track",
            content=b'{"type":"track","event":"x","userId":"' + email.encode() + b'","p":"\xff"}',
            auth=AUTH,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400  # invalid UTF-8: a dead letter, bytes kept, email hashed

        def stored() -> tuple[bool, Any]:
            try:
                got = (
                    _query(s, "SELECT count() FROM events")[0][0],
                    _query(s, "SELECT count() FROM failed_events")[0][0],
                )
            except Exception as exc:
                return False, str(exc)
            return got == (5, 6), got

        wait_until(stored, 180, "5 events and 6 dead letters in ClickHouse")
        places: dict[str, list[bytes]] = {
            "kafka": _kafka_texts(s),
            "redis": _redis_texts(s),
            "clickhouse": [
                repr(row).encode()
                for table in ("events", "failed_events")
                for row in _query(s, f"SELECT * FROM {table}")
            ],
        }
        hashed_email = canonical("email", email, salt=SALT)
        for place, texts in places.items():
            assert texts, place
            blob = b"\n".join(texts).lower()
            found = [n for n in needles if n.encode() in blob]
            assert not found, f"plain {found} in {place}"
            assert hashed_email.encode() in blob, place  # the hash is there instead
        # identity still links through the hashed user id: one key, in Redis
        r = sync_redis(s)
        assert r.exists(RedisKeys(s.redis_prefix).identifier("user_id", hashed_email))
        user_ids = {row[0] for row in _query(s, "SELECT user_id FROM events WHERE user_id != ''")}
        assert user_ids == {hashed_email}
