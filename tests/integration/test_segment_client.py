"""Compatibility: the official segment-analytics-python library, pointed at our collector."""

from __future__ import annotations

import msgspec
from segment.analytics.client import Client

from pipeline.kafka.inspect import read_range


def test_segment_python_library_delivers_track_identify_page(settings, collector):
    errors: list[Exception] = []
    for gzip in (False, True):
        client = Client(
            "it-write-key",
            host=collector,
            sync_mode=True,
            gzip=gzip,
            on_error=lambda e, _batch: errors.append(e),
            max_retries=1,
        )
        client.identify(
            f"user-{gzip}", {"email": "Ada@Example.com", "plan": "pro"}, anonymous_id="ck-9"
        )
        client.track(f"user-{gzip}", "Product Viewed", {"sku": "SKU-1", "price": 12.5})
        client.page(f"user-{gzip}", "Docs", "Getting started", {"path": "/docs"})
        client.flush()
    assert errors == []
    got = [msgspec.json.decode(m.value()) for m in read_range(settings, settings.topic("events"))]
    assert len(got) == 6
    by_type = {(e["type"], e["userId"]): e for e in got}
    track = by_type[("track", "user-True")]
    assert track["event"] == "Product Viewed" and track["properties"] == {
        "sku": "SKU-1",
        "price": 12.5,
    }
    assert track["context"]["library"]["name"] == "analytics-python"
    page = by_type[("page", "user-False")]
    assert page["name"] == "Getting started" and page["category"] == "Docs"
    ident = by_type[("identify", "user-False")]
    assert ident["traits"]["plan"] == "pro" and len(ident["traits"]["email"]) == 64
    assert ident["identities"]["anonymous_id"] == "ck-9"
    assert all(e["messageId"] and e["receivedAt"] and e["originalTimestamp"] for e in got)
