"""Simulated customers' events as ready-to-publish Kafka records (validated, enriched)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec

from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.sources.ingest import Ingestor
from pipeline.sources.simulator import Simulator
from pipeline.transforms.sendgrid import to_email_event


def simulated_records(
    settings: Settings, customers: int, touches: int, seed: int = 11
) -> list[Record]:
    sim = Simulator("http://unused", "k", customers, seed=seed, invalid_share=0.0)
    rng = random.Random(seed)
    for _ in range(touches):
        sim.touch(rng.choice(sim.customers))
    ingestor = Ingestor(settings)
    records: list[Record] = []
    for name, items in sim.queues.items():
        if name == "sendgrid":
            prepared = ingestor.prepare_events(
                [(msgspec.json.encode(i), to_email_event(i)) for i in items], source="sendgrid"
            )
        else:
            prepared = ingestor.prepare_raw([msgspec.json.encode(i) for i in items], source=name)
        records.extend(prepared.records)
    rng.shuffle(records)
    return records


CATALOGUE = {
    "vinyl": ["v1", "v2", "v3", "v4", "v5", "v6"],
    "cd": ["c1", "c2", "c3", "c4", "c5"],
    "merch": ["m1", "m2", "m3", "m4"],
}


def purchase_history(
    settings: Settings, customers: int, days: int = 400, seed: int = 3
) -> list[Record]:
    """Store receipts spread over ``days`` of the past, BG/NBD-like, in time order.

    Each customer buys at their own Poisson rate and drops out for good after any
    purchase with their own probability; items come from the customer's favourite
    category mostly, so item co-occurrence carries signal.
    """
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(days=1)
    start = end - timedelta(days=days)
    docs: list[tuple[datetime, dict[str, object]]] = []
    for c in range(customers):
        rate = rng.gammavariate(0.8, 1 / 20)  # purchases per day
        dropout = rng.betavariate(1.0, 3.0)
        favourite = rng.choice(list(CATALOGUE))
        t = start + timedelta(days=rng.uniform(0, days * 0.6))
        n = 0
        while t < end:
            cat = favourite if rng.random() < 0.8 else rng.choice(list(CATALOGUE))
            prices = {
                sku: round(rng.uniform(5, 40), 2)
                for sku in rng.sample(CATALOGUE[cat], k=rng.randint(1, 2))
            }
            items = [{"sku": sku, "category": cat, "price": p} for sku, p in prices.items()]
            docs.append(
                (
                    t,
                    {
                        "type": "pos_transaction",
                        "messageId": f"hist-{seed}-{c}-{n}",
                        "transactionId": f"h{c}-{n}",
                        "storeId": f"s{c % 3}",
                        "loyaltyId": f"LC{c:05d}",
                        "timestamp": t.isoformat(),
                        "items": items,
                        "total": round(sum(prices.values()), 2),
                    },
                )
            )
            n += 1
            if rng.random() < dropout:
                break
            t += timedelta(days=rng.expovariate(max(rate, 1e-3)))
    docs.sort(key=lambda d: (d[0], str(d[1]["messageId"])))
    ingestor = Ingestor(settings)
    prepared = ingestor.prepare_raw([msgspec.json.encode(d) for _t, d in docs], source="pos")
    return [r for r in prepared.records if r.topic.endswith(".events")]


def preload(settings: Settings, records: list[Record], chunk: int = 5000) -> None:
    """Publish records (acks=all) before a benchmark starts its consumers."""
    producer = ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=60_000)
    for i in range(0, len(records), chunk):
        producer.send_sync(records[i : i + chunk], timeout=120)
    producer.close()
