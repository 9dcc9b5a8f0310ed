"""A traffic simulator that behaves like real customers and talks HTTP like a real client.

Customers browse anonymously on a first-party cookie, some log in later (identify),
buy online and in stores with a loyalty card, receive email campaigns and open or
click them, complain now and then, and some drift away (their activity decays).
A small share of requests is deliberately broken so the dead-letter path shows.
Everything goes through the collector's public endpoints, batched like an SDK.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

CATEGORIES = {
    "shoes": ["Nike", "Adidas", "Ecco"],
    "outerwear": ["Patagonia", "Columbia"],
    "electronics": ["Sony", "Apple", "Samsung"],
    "books": ["Penguin", "Vintage"],
    "home": ["IKEA", "Muji"],
    "beauty": ["Nivea", "Clinique"],
}
STORES = ["vilnius-01", "kaunas-01", "riga-02", "tallinn-01"]
CAMPAIGNS = ["spring-sale", "new-arrivals", "win-back", "loyalty-news"]
PAGES = ["/", "/category/{c}", "/search?q={c}", "/product/{sku}", "/cart", "/account"]


@dataclass
class Customer:
    idx: int
    cookie: str
    user_id: str
    email: str
    phone: str
    loyalty_id: str | None
    likes: list[str]
    activity: float
    drifting: bool
    logged_in: bool = False
    clock_skew: timedelta = timedelta(0)
    cart: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_requests: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def make_customers(n: int, rng: random.Random) -> list[Customer]:
    out = []
    for i in range(n):
        likes = rng.sample(sorted(CATEGORIES), k=2)
        out.append(
            Customer(
                idx=i,
                cookie=f"ck-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
                user_id=f"u{i:06d}",
                email=f"Customer.{i}@Example.com",
                phone=f"+3706{i:07d}",
                loyalty_id=f"LC{i:08d}" if rng.random() < 0.6 else None,
                likes=likes,
                activity=rng.lognormvariate(0, 0.8),
                drifting=rng.random() < 0.2,
                clock_skew=timedelta(seconds=rng.choice([0, 0, 0, 90, -300, 3600])),
            )
        )
    return out


def _product(rng: random.Random, c: Customer) -> dict[str, Any]:
    cat = rng.choice(c.likes) if rng.random() < 0.7 else rng.choice(sorted(CATEGORIES))
    brand = rng.choice(CATEGORIES[cat])
    n = rng.randrange(20)
    return {
        "sku": f"{cat[:3].upper()}-{brand[:3].upper()}-{n:03d}",
        "product_id": f"{cat}-{n}",
        "category": cat,
        "brand": brand,
        "price": round(rng.uniform(5, 250), 2),
        "quantity": 1,
    }


class Simulator:
    """Generates a mixed stream and posts it through the collector."""

    def __init__(
        self,
        base_url: str,
        write_key: str,
        customers: int,
        seed: int = 7,
        invalid_share: float = 0.01,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.write_key = write_key
        self.rng = random.Random(seed)
        self.customers = make_customers(customers, self.rng)
        self.invalid_share = invalid_share
        self.stats = SimStats()
        self.queues: dict[str, list[Any]] = {"batch": [], "sendgrid": [], "pos": []}

    # --- one customer touch point ---------------------------------------------

    def _env(self, c: Customer, event_type: str, **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC) + c.clock_skew
        ev: dict[str, Any] = {
            "type": event_type,
            "messageId": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "anonymousId": c.cookie,
            "timestamp": now.isoformat(),
            "sentAt": now.isoformat(),
            "context": {
                "ip": f"10.0.{c.idx % 250}.{c.idx % 200}",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            },
        }
        if c.logged_in:
            ev["userId"] = c.user_id
        ev.update(fields)
        return ev

    def touch(self, c: Customer) -> None:
        r = self.rng.random()
        if r < 0.55:
            self._web_visit(c)
        elif r < 0.75:
            self._email(c)
        elif r < 0.9:
            self._store_purchase(c)
        elif r < 0.95:
            self.queues["batch"].append(
                self._env(
                    c,
                    "cookie_sync",
                    cookieId=c.cookie,
                    linkedType="partner",
                    partner="adnet",
                    linkedId=f"adn-{c.idx}",
                )
            )
        elif r < 0.98:
            self.queues["batch"].append(
                self._env(
                    c,
                    "consent",
                    purpose=self.rng.choice(["email_marketing", "personalization", "analytics"]),
                    status="revoked" if self.rng.random() < 0.2 else "granted",
                )
            )
        else:
            self.queues["batch"].append(
                self._env(
                    c,
                    "support",
                    kind="complaint" if self.rng.random() < 0.6 else "question",
                    topic=self.rng.choice(["late delivery", "refund", "sizing", "billing"]),
                    channel=self.rng.choice(["call_centre", "chat", "email"]),
                    email=c.email,
                )
            )

    def _web_visit(self, c: Customer) -> None:
        q = self.queues["batch"]
        for _ in range(self.rng.randint(1, 4)):
            cat = self.rng.choice(c.likes)
            path = self.rng.choice(PAGES).format(c=cat, sku=f"{cat}-1")
            q.append(
                self._env(
                    c,
                    "page",
                    name=path,
                    properties={"path": path, "url": f"https://shop.example{path}"},
                )
            )
        product = _product(self.rng, c)
        q.append(self._env(c, "track", event="Product Viewed", properties=product))
        if self.rng.random() < 0.35:
            c.cart.append(product)
            q.append(self._env(c, "track", event="Product Added", properties=product))
        if not c.logged_in and self.rng.random() < 0.3:
            c.logged_in = True
            traits = {
                "email": c.email,
                "name": f"Customer {c.idx}",
                "city": self.rng.choice(["Vilnius", "Riga", "Tallinn"]),
            }
            if c.loyalty_id:
                traits["loyalty_id"] = c.loyalty_id
            q.append(self._env(c, "identify", traits=traits))
            if c.idx % 5 == 0:  # a fifth shop for a household or business account
                account = f"acct-{c.idx % 50:03d}"
                plan = "business" if c.idx % 2 else "family"
                q.append(
                    self._env(c, "group", groupId=account, traits={"name": account, "plan": plan})
                )
        if c.logged_in and c.cart and self.rng.random() < 0.5:
            total = round(sum(p["price"] * p["quantity"] for p in c.cart), 2)
            q.append(
                self._env(
                    c,
                    "track",
                    event="Order Completed",
                    properties={
                        "order_id": f"o-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}",
                        "revenue": total,
                        "currency": "EUR",
                        "products": c.cart,
                    },
                )
            )
            c.cart = []

    def _email(self, c: Customer) -> None:
        campaign = self.rng.choice(CAMPAIGNS)
        ts = int(time.time())
        steps = ["processed", "delivered"]
        if self.rng.random() < 0.03:
            steps = ["processed", "bounce"]
        elif self.rng.random() < 0.45:
            steps.append("open")
            if self.rng.random() < 0.3:
                steps.append("click")
        if self.rng.random() < 0.01:
            steps.append(self.rng.choice(["unsubscribe", "spamreport"]))
        for step in steps:
            item = {
                "email": c.email,
                "event": step,
                "timestamp": ts,
                "campaign_id": campaign,
                "sg_event_id": uuid.UUID(int=self.rng.getrandbits(128)).hex,
                "sg_message_id": f"{campaign}.{c.idx}",
            }
            if step == "click":
                item["url"] = f"https://shop.example/category/{c.likes[0]}"
            self.queues["sendgrid"].append(item)

    def _store_purchase(self, c: Customer) -> None:
        items = [_product(self.rng, c) for _ in range(self.rng.randint(1, 4))]
        lines = [
            {k: p[k] for k in ("sku", "category", "brand", "price", "quantity")} for p in items
        ]
        ev = self._env(
            c,
            "pos_transaction",
            transactionId=f"t-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}",
            storeId=self.rng.choice(STORES),
            items=lines,
            total=round(sum(p["price"] for p in items), 2),
            currency="EUR",
            pointsRedeemed=self.rng.choice([0, 0, 0, 100]),
        )
        ev.pop("anonymousId")
        ev.pop("userId", None)
        if c.loyalty_id:
            ev["loyaltyId"] = c.loyalty_id
        else:
            ev["email"] = c.email
        self.queues["pos"].append(ev)

    def _broken(self) -> dict[str, Any]:
        """Realistic mistakes: a missing identifier, a wrong type, an unknown event type."""
        kind = self.rng.randrange(3)
        if kind == 0:
            return {"type": "track", "event": "Product Viewed", "properties": {"sku": "X"}}
        if kind == 1:
            return {
                "type": "pos_transaction",
                "transactionId": "t-bad",
                "storeId": "s",
                "loyaltyId": "LC1",
                "items": [{"sku": "a", "price": "free"}],
                "total": 1,
            }
        return {"type": "pageview", "anonymousId": "ck-x"}

    # --- sending ----------------------------------------------------------------

    async def _post(self, client: httpx.AsyncClient, path: str, payload: Any, count: int) -> None:
        self.stats.sent += count
        try:
            resp = await client.post(path, json=payload)
        except httpx.HTTPError:
            self.stats.failed_requests += 1
            return
        body = (
            resp.json()
            if resp.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if resp.status_code >= 500:
            self.stats.failed_requests += 1
            return
        self.stats.accepted += int(body.get("accepted", 1 if resp.status_code == 200 else 0))
        for rej in body.get("rejected", []):
            self.stats.rejected += 1
            self.stats.reasons[rej.get("type", "?")] += 1

    async def flush(self, client: httpx.AsyncClient) -> None:
        batch, sendgrid, pos = self.queues["batch"], self.queues["sendgrid"], self.queues["pos"]
        self.queues = {"batch": [], "sendgrid": [], "pos": []}
        for ev in batch:
            self.stats.by_type[ev.get("type", "?")] += 1
        self.stats.by_type["email"] += len(sendgrid)
        self.stats.by_type["pos_transaction"] += len(pos)
        tasks = []
        if batch:
            tasks.append(
                self._post(
                    client,
                    "/v1/batch",
                    {"batch": batch, "sentAt": datetime.now(UTC).isoformat()},
                    len(batch),
                )
            )
        if sendgrid:
            tasks.append(self._post(client, "/v1/webhooks/sendgrid", sendgrid, len(sendgrid)))
        if pos:
            tasks.append(self._post(client, "/v1/pos/transactions", pos, len(pos)))
        await asyncio.gather(*tasks)

    async def run(self, rate: float, duration: float, batch_interval: float = 0.1) -> SimStats:
        """Send about ``rate`` events/s for ``duration`` seconds; returns what happened."""
        start = time.monotonic()
        # Cumulative weights once: random.choices with plain weights re-adds all of them
        # on every call (94 us per pick for 2,000 customers); the picks are the same.
        cum_weights = list(itertools.accumulate(c.activity for c in self.customers))
        async with httpx.AsyncClient(
            base_url=self.base_url, auth=(self.write_key, ""), timeout=30
        ) as client:
            generated = 0
            while (elapsed := time.monotonic() - start) < duration:
                target = int(rate * (elapsed + batch_interval))
                while generated < target:
                    c = self.rng.choices(self.customers, cum_weights=cum_weights)[0]
                    if c.drifting and elapsed > duration / 3 and self.rng.random() < 0.8:
                        continue  # drifting away: most of their visits no longer happen
                    before = sum(len(q) for q in self.queues.values())
                    if self.rng.random() < self.invalid_share:
                        self.queues["batch"].append(self._broken())
                    else:
                        self.touch(c)
                    generated += sum(len(q) for q in self.queues.values()) - before
                await self.flush(client)
                await asyncio.sleep(max(0.0, batch_interval - (time.monotonic() - start - elapsed)))
            await self.flush(client)
        self.stats.seconds = time.monotonic() - start
        return self.stats
