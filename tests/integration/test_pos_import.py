"""`crm import pos`: CSV rows into real Kafka, rejects reported, resumable."""

from __future__ import annotations

import csv

import msgspec

from pipeline.kafka.inspect import read_range
from pipeline.sources.pos_csv import import_file

ROWS = [
    [
        "receipt",
        "timestamp",
        "store_id",
        "loyalty_id",
        "email",
        "sku",
        "category",
        "brand",
        "quantity",
        "price",
    ],
    ["t1", "2026-11-01T10:00:00Z", "vilnius-01", "LC1", "", "SKU1", "shoes", "Nike", "1", "59.90"],
    [
        "t1",
        "2026-11-01T10:00:00Z",
        "vilnius-01",
        "LC1",
        "",
        "SKU2",
        "books",
        "Penguin",
        "2",
        "9.99",
    ],
    ["t2", "2026-11-01T11:00:00", "riga-02", "", "A@B.com", "SKU3", "home", "IKEA", "1", "abc"],
    ["t3", "2026-11-01T12:00:00Z", "riga-02", "", "A@B.com", "SKU4", "home", "IKEA", "3", "5"],
]


def test_pos_csv_import_publishes_rejects_and_resumes(settings, tmp_path):
    path = tmp_path / "tills.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(ROWS)
    mapping = {"transaction_id": "receipt"}
    result = import_file(settings, path, mapping, tmp_path / "rejects.csv")
    assert (result.transactions, result.accepted, result.rejected) == (3, 2, 1)
    rejects = list(csv.DictReader((tmp_path / "rejects.csv").open()))
    assert rejects[0]["row"] == "3" and "price='abc' is not a number" in rejects[0]["error"]

    got = {
        e["transactionId"]: e
        for e in (
            msgspec.json.decode(m.value()) for m in read_range(settings, settings.topic("events"))
        )
    }
    assert set(got) == {"t1", "t3"}
    assert got["t1"]["total"] == 79.88 and len(got["t1"]["items"]) == 2
    assert got["t1"]["messageId"] == "pos-vilnius-01-t1"
    assert len(got["t3"]["identities"]["email"]) == 64
    assert len(list(read_range(settings, settings.topic("events.dlq")))) == 1

    again = import_file(settings, path, mapping, tmp_path / "rejects2.csv")
    assert again.skipped_rows == 4 and again.transactions == 0  # resumed: nothing re-sent
