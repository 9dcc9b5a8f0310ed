"""HTTP request in, Redis profile out: identity across channels and the lookup API."""

from __future__ import annotations

import os
import time
import uuid

import httpx

from pipeline.wire.keys import RedisKeys
from tests.integration.conftest import wait_for

WRITE = ("it-write-key", "")
READ = {"Authorization": "Bearer it-read-key"}


def test_one_customer_across_web_store_and_email(pipeline_env):
    c, api = pipeline_env["collector"], pipeline_env["api"]
    cookie, email = f"ck-{uuid.uuid4().hex[:8]}", "Jane.Doe@Example.com"
    page = {"type": "page", "anonymousId": cookie, "name": "home"}
    view = {
        "type": "track",
        "anonymousId": cookie,
        "event": "Product Viewed",
        "properties": {"sku": "SKU-1", "category": "shoes"},
    }
    assert (
        httpx.post(f"{c}/v1/batch", auth=WRITE, json={"batch": [page, view, page]}).status_code
        == 200
    )
    # the anonymous visitor gets a profile of their own first
    anon = wait_for(
        lambda: httpx.get(f"{api}/v1/profiles/by/anonymous_id/{cookie}", headers=READ),
        lambda r: r.status_code == 200 and r.json()["events"] == 3,
    )
    anon_id = anon.json()["customer_id"]

    ident = {
        "type": "identify",
        "anonymousId": cookie,
        "userId": "jane-1",
        "traits": {"email": email, "city": "Vilnius"},
    }
    assert httpx.post(f"{c}/v1/batch", auth=WRITE, json={"batch": [ident]}).status_code == 200
    pos = {
        "transactionId": "t-1",
        "storeId": "vilnius-01",
        "loyaltyId": "LC-77",
        "email": " jane.doe@example.com",
        "items": [{"sku": "SKU-1", "category": "shoes", "brand": "Ecco", "price": 120.0}],
        "total": 120.0,
    }
    assert httpx.post(f"{c}/v1/pos/transactions", auth=WRITE, json=pos).status_code == 200
    sg = [
        {
            "email": email,
            "event": "open",
            "timestamp": int(time.time()),
            "sg_event_id": uuid.uuid4().hex,
            "campaign_id": "spring",
        }
    ]
    assert httpx.post(f"{c}/v1/webhooks/sendgrid", auth=WRITE, json=sg).status_code == 200

    def by(kind: str, value: str) -> httpx.Response:
        return httpx.get(f"{api}/v1/profiles/by/{kind}/{value}", headers=READ)

    full = wait_for(
        lambda: by("email", email), lambda r: r.status_code == 200 and r.json()["events"] == 6
    ).json()
    # the anonymous profile became the known customer (or, if the store receipt reached the
    # identity stage first from its own partition, was absorbed by it: arrival order decides)
    survivor = full["customer_id"]
    assert survivor == anon_id or anon_id in full["merged_customers"]
    assert full["purchases"]["orders"] == 1 and full["purchases"]["revenue"] == 120.0
    assert full["web"]["page_views"] == 2 and full["web"]["sessions"] == 1
    assert full["email"]["totals"] == {"open": 1}
    assert full["traits"]["city"] == "Vilnius"
    assert full["loyalty"]["cards"] == ["LC-77"] and full["loyalty"]["points_balance"] == 120
    assert set(full["identifiers"]) >= {"anonymous_id", "user_id", "email", "loyalty_id"}
    for kind, value in [
        ("anonymous_id", cookie),
        ("loyalty_id", "LC-77"),
        ("user_id", "jane-1"),
        ("email", "JANE.DOE@example.com "),
    ]:
        r = by(kind, value)
        assert r.status_code == 200 and r.json()["customer_id"] == survivor, (kind, r.text)
    assert httpx.get(f"{api}/v1/profiles/{anon_id}", headers=READ).json()["events"] == 6
    assert by("email", "nobody@example.com").status_code == 404
    assert httpx.get(f"{api}/v1/profiles/{anon_id}").status_code == 401


def test_two_known_customers_merge_and_the_absorbed_id_resolves_to_the_survivor(pipeline_env):
    c, api = pipeline_env["collector"], pipeline_env["api"]
    cookie = f"ck-{uuid.uuid4().hex[:8]}"
    store = {
        "transactionId": "t-9",
        "storeId": "riga-02",
        "loyaltyId": "LC-9",
        "email": "max@example.com",
        "items": [{"sku": "B", "price": 10.0}],
        "total": 10.0,
    }
    assert httpx.post(f"{c}/v1/pos/transactions", auth=WRITE, json=store).status_code == 200
    web = {
        "type": "track",
        "anonymousId": cookie,
        "event": "Product Added",
        "properties": {"sku": "B", "price": 10.0},
    }
    assert httpx.post(f"{c}/v1/batch", auth=WRITE, json={"batch": [web]}).status_code == 200

    def by(kind: str, value: str) -> httpx.Response:
        return httpx.get(f"{api}/v1/profiles/by/{kind}/{value}", headers=READ)

    store_c = wait_for(lambda: by("loyalty_id", "LC-9"), lambda r: r.status_code == 200).json()[
        "customer_id"
    ]
    web_c = wait_for(lambda: by("anonymous_id", cookie), lambda r: r.status_code == 200).json()[
        "customer_id"
    ]
    assert store_c != web_c
    # logging in with the email links the two
    ident = {"type": "identify", "anonymousId": cookie, "traits": {"email": "max@example.com"}}
    assert httpx.post(f"{c}/v1/batch", auth=WRITE, json={"batch": [ident]}).status_code == 200
    merged = wait_for(
        lambda: by("anonymous_id", cookie),
        lambda r: r.status_code == 200 and r.json()["events"] == 3,
    ).json()
    assert merged["customer_id"] == store_c  # the email's customer survives
    assert merged["purchases"]["orders"] == 1 and merged["web"]["cart_adds"] == 1
    assert merged["merged_customers"] == [web_c]
    absorbed = httpx.get(f"{api}/v1/profiles/{web_c}", headers=READ).json()
    assert absorbed["customer_id"] == store_c and absorbed["requested"] == web_c


def test_forget_by_identifier_erases_the_customer_everywhere_in_redis(pipeline_env, settings):
    """`crm forget --identifier` (as an operator types it) removes links, profile and segments."""
    import subprocess
    import sys

    from pipeline.stores.redis_client import sync_redis

    c, api = pipeline_env["collector"], pipeline_env["api"]
    cookie, email = f"ck-{uuid.uuid4().hex[:8]}", f"Forget.Me.{uuid.uuid4().hex[:6]}@Example.com"
    ident = {
        "type": "identify",
        "anonymousId": cookie,
        "userId": "fm-1",
        "traits": {"email": email},
    }
    buy = {
        "type": "track",
        "anonymousId": cookie,
        "event": "Order Completed",
        "properties": {
            "order_id": "o-1",
            "revenue": 350.0,
            "products": [{"sku": "S", "price": 350}],
        },
    }
    # The cookie comes first, so the customer's id derives from it: after the erasure the
    # same cookie must start a visible new profile, not hit the erased one's tombstone.
    page = {"type": "page", "anonymousId": cookie, "name": "home"}
    batch = {"batch": [page, ident, buy]}
    assert httpx.post(f"{c}/v1/batch", auth=WRITE, json=batch).status_code == 200
    before = wait_for(
        lambda: httpx.get(f"{api}/v1/profiles/by/email/{email}", headers=READ),
        lambda r: r.status_code == 200 and r.json()["events"] == 3,
    ).json()
    cid, segments = before["customer_id"], before["segments"]
    r = sync_redis(settings, decode_responses=True)
    p = settings.topic_prefix
    assert segments, "the customer should be in some segment for this test to mean anything"
    assert all(r.zscore(RedisKeys(p).segment_of(s, cid), cid) is not None for s in segments)

    env = {**os.environ, **pipeline_env["env"]}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "forget", "--identifier", f"email:{email}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"forgot {cid}: removed 3 identifiers" in done.stdout, done.stdout

    # Identity links go at once; the profile and segment memberships when the worker
    # processes the Forget record in order with the customer's other records.
    assert r.get(RedisKeys(p).identifier("user_id", "fm-1")) is None
    assert not r.exists(RedisKeys(p).members(cid))
    for kind, value in [("email", email), ("anonymous_id", cookie), ("user_id", "fm-1")]:
        assert httpx.get(f"{api}/v1/profiles/by/{kind}/{value}", headers=READ).status_code == 404
    wait_for(
        lambda: httpx.get(f"{api}/v1/profiles/{cid}", headers=READ),
        lambda resp: resp.status_code == 404,
    )
    wait_for(
        lambda: [s for s in segments if r.zscore(RedisKeys(p).segment_of(s, cid), cid) is not None],
        lambda left: left == [],
    )
    assert not [k for k in r.scan_iter(RedisKeys(p).identifiers()) if r.get(k) == cid]
    # A new event with the forgotten identifier starts a new customer, not the old one.
    again = {"type": "page", "anonymousId": cookie, "name": "back again"}
    assert httpx.post(f"{c}/v1/batch", auth=WRITE, json={"batch": [again]}).status_code == 200
    fresh = wait_for(
        lambda: httpx.get(f"{api}/v1/profiles/by/anonymous_id/{cookie}", headers=READ),
        lambda resp: resp.status_code == 200,
    ).json()
    assert fresh["events"] == 1 and "email" not in fresh["identifiers"]
    assert fresh["customer_id"] != cid  # the erased id keeps its tombstone
