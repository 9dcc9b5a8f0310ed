"""Simulated customers' events as ready-to-publish Kafka records (validated, enriched)."""

from __future__ import annotations

import random

import msgspec

from pipeline.config import Settings
from pipeline.kafka.producer import Record
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
