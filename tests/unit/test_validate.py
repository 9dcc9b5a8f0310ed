import msgspec
import pytest

from pipeline.errors import InvalidEvent
from pipeline.events import Email, PosTransaction, Track
from pipeline.transforms.validate import decode_event


def enc(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def test_track_decodes_with_segment_names():
    ev = decode_event(
        enc(
            {
                "type": "track",
                "event": "Signed Up",
                "userId": "u1",
                "messageId": "m1",
                "timestamp": "2026-01-01T10:00:00Z",
            }
        )
    )
    assert isinstance(ev, Track)
    assert ev.user_id == "u1" and ev.message_id == "m1" and ev.event == "Signed Up"


def test_endpoint_type_may_be_omitted_but_must_match():
    assert isinstance(decode_event(enc({"event": "x", "userId": "u"}), Track), Track)
    with pytest.raises(InvalidEvent, match=r"Invalid value 'page' - at `\$.type`"):
        decode_event(enc({"type": "page", "event": "x", "userId": "u"}), Track)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"type": "track", "event": "x"}, "one of userId or anonymousId is required"),
        ({"type": "track", "userId": "u"}, "missing required field `event`"),
        ({"type": "pageview", "userId": "u"}, "Invalid value 'pageview'"),
        ({"type": "page", "userId": "u", "timestamp": "2026-01-01T10:00:00"}, "timezone"),
        ({"type": "alias", "previousId": "a"}, "alias: userId is required"),
        ({"type": "email", "action": "open"}, "at least one of userId"),
        ({"type": "email", "action": "opened", "email": "a@b.co"}, "at `$.action`"),
        ({"type": "consent", "purpose": "x", "status": "granted", "userId": "u"}, "at `$.purpose`"),
    ],
)
def test_invalid_events_have_precise_reasons(doc, message):
    with pytest.raises(InvalidEvent) as exc:
        decode_event(enc(doc))
    assert message in exc.value.reason


def test_malformed_json_is_its_own_error_type():
    with pytest.raises(InvalidEvent) as exc:
        decode_event(b'{"type": "track", ')
    assert exc.value.error_type == "malformed"


def test_pos_transaction_line_items_are_typed():
    doc = {
        "type": "pos_transaction",
        "transactionId": "t",
        "storeId": "s",
        "loyaltyId": "LC1",
        "items": [{"sku": "a", "price": 10, "quantity": 2}],
        "total": 20,
        "currency": "EUR",
    }
    ev = decode_event(enc(doc))
    assert isinstance(ev, PosTransaction) and ev.items[0].quantity == 2
    doc["items"] = [{"sku": "a", "price": -1}]
    with pytest.raises(InvalidEvent, match=r"\$.items\[0\].price"):
        decode_event(enc(doc))
    doc["items"] = []
    with pytest.raises(InvalidEvent, match="length"):
        decode_event(enc(doc))
    doc["items"], doc["currency"] = [{"sku": "a", "price": 1}], "euro"
    with pytest.raises(InvalidEvent, match="currency"):
        decode_event(enc(doc))


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"order_id": "o1"}, "revenue or properties.total is required"),
        ({"revenue": 10}, "order_id"),
        ({"order_id": "o1", "revenue": "lots"}, "properties.revenue"),
        ({"order_id": "o1", "revenue": 5, "products": [{"price": -2}]}, "products[0].price"),
    ],
)
def test_order_completed_rules(props, message):
    with pytest.raises(InvalidEvent) as exc:
        decode_event(
            enc({"type": "track", "event": "Order Completed", "userId": "u", "properties": props})
        )
    assert message in exc.value.reason


def test_order_completed_accepts_camel_case_ids_and_string_numbers():
    ev = decode_event(
        enc(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u",
                "properties": {"orderId": "o1", "total": "12.5"},
            }
        )
    )
    assert isinstance(ev, Track)


def test_product_viewed_needs_a_product_reference():
    with pytest.raises(InvalidEvent, match=r"product_id or properties\.sku"):
        decode_event(
            enc({"type": "track", "event": "Product Viewed", "userId": "u", "properties": {}})
        )


def test_email_event_decodes():
    ev = decode_event(
        enc(
            {
                "type": "email",
                "action": "click",
                "email": "a@b.co",
                "campaignId": "c1",
                "url": "https://x",
            }
        )
    )
    assert isinstance(ev, Email) and ev.campaign_id == "c1"


@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00Z",
        "1850-06-01T00:00:00Z",
        "2300-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_event_times_outside_the_window_are_dead_lettered_with_the_reason(when):
    from pipeline.config import Settings
    from pipeline.sources.ingest import Ingestor

    doc = {"type": "track", "event": "Signed Up", "userId": "u1", "timestamp": when}
    prepared = Ingestor(Settings()).prepare_raw([enc(doc)], source="test")
    assert prepared.accepted == 0 and len(prepared.rejected) == 1
    assert "timestamp" in prepared.rejected[0].reason, prepared.rejected[0].reason


def test_clock_skew_correction_that_leaves_any_date_range_is_an_invalid_event_not_a_crash():
    from pipeline.config import Settings
    from pipeline.sources.ingest import Ingestor

    doc = {
        "type": "page",
        "anonymousId": "a",
        "timestamp": "0001-01-02T00:00:00Z",
        "sentAt": "9999-12-31T00:00:00Z",
    }
    prepared = Ingestor(Settings()).prepare_raw([enc(doc)], source="test")
    assert prepared.accepted == 0 and "range" in prepared.rejected[0].reason


def test_recent_and_historical_times_within_the_window_are_accepted():
    from datetime import UTC, datetime, timedelta

    from pipeline.config import Settings
    from pipeline.sources.ingest import Ingestor

    now = datetime.now(UTC)
    docs = [
        {"type": "page", "anonymousId": "a", "timestamp": (now - timedelta(days=d)).isoformat()}
        for d in (0, 400, 3000)
    ]
    assert Ingestor(Settings()).prepare_raw([enc(d) for d in docs], source="t").accepted == 3


@pytest.mark.parametrize(
    "properties",
    [
        {"order_id": "o1", "revenue": 1e30},
        {"order_id": "o1", "total": 5e9},
        {"order_id": "o1", "revenue": 10, "products": [{"sku": "s", "price": 1e12}]},
        {"sku": "s", "price": 1e30},
        {"sku": "s", "quantity": 10**12},
    ],
)
def test_amounts_no_downstream_column_can_hold_are_rejected(properties):
    name = "Order Completed" if "order_id" in properties else "Product Added"
    doc = {"type": "track", "event": name, "userId": "u", "properties": properties}
    with pytest.raises(InvalidEvent, match="properties"):
        decode_event(enc(doc))
