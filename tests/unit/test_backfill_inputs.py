"""Outside files for `crm backfill --input`, and replay's rate limiter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest

from pipeline.backfill.inputs import import_file
from pipeline.backfill.replay import TokenBucket
from pipeline.config import Settings
from pipeline.events import Event, PosTransaction

decoder = msgspec.json.Decoder(Event)


def test_jsonl_events_are_validated_enriched_and_rejects_kept(tmp_path: Path):
    path = tmp_path / "history.jsonl"
    lines = [
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "u1",
            "timestamp": "2024-03-01T10:00:00Z",
            "properties": {"sku": "A"},
        },
        {"type": "track", "userId": "u1"},  # no event name
        "not json",
        {
            "type": "identify",
            "userId": "u2",
            "traits": {"email": "X@Example.com"},
            "timestamp": "2024-03-02T10:00:00Z",
        },
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    out = import_file(Settings(), path)
    assert len(out.events) == 2
    assert [r["item"] for r in out.rejected] == [1, 2]
    events = [decoder.decode(raw) for raw in out.events]
    assert all(e.message_id and e.received_at for e in events)
    assert events[1].identities["email"] != "x@example.com"  # hashed like the collector
    again = import_file(Settings(), path)
    assert [decoder.decode(r).message_id for r in again.events] == [e.message_id for e in events]


def test_csv_transactions_group_line_items_and_report_bad_rows(tmp_path: Path):
    path = tmp_path / "tx.csv"
    path.write_text(
        "transaction_id,timestamp,store_id,loyalty_id,sku,category,price,quantity\n"
        "t1,2024-01-05T10:00:00Z,s1,L1,A,shoes,10.50,2\n"
        "t1,2024-01-05T10:00:00Z,s1,L1,B,socks,2.00,1\n"
        "t2,yesterday,s1,L2,C,shoes,5,1\n"
    )
    out = import_file(Settings(), path)
    assert len(out.events) == 1
    tx = decoder.decode(out.events[0])
    assert isinstance(tx, PosTransaction) and len(tx.items) == 2
    assert out.rejected[0]["error_type"] == "schema" and "timestamp" in out.rejected[0]["reason"]


def test_csv_without_required_columns_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("id,amount\n1,2\n")
    with pytest.raises(ValueError, match="missing columns transaction_id"):
        import_file(Settings(), path)


def test_token_bucket_limits_the_rate():
    bucket = TokenBucket(2000)
    start = time.monotonic()
    for _ in range(10):
        bucket.take(100)
    assert time.monotonic() - start >= 0.35  # 1000 tokens at 2000/s, minus one burst
