"""The sink's MsgPack rows store exactly what the old tuple rows stored, table by table.

Both paths insert into copies of the real tables in an embedded chdb store (no
services): the reference rows through clickhouse-connect's ``insert``, the wire rows
as one ``MsgPack`` blob through ``raw_insert``, and the two tables must be equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.events import (
    Alias,
    Consent,
    CookieSync,
    Email,
    Event,
    Group,
    Identify,
    LineItem,
    Page,
    PosTransaction,
    Screen,
    Support,
    Track,
)
from pipeline.sinks.clickhouse.client import connect, migrate
from pipeline.sinks.clickhouse.event_wire import (
    event_row_wire,
    event_wire,
    routed_reader,
    routed_wire,
)
from pipeline.sinks.clickhouse.rows import (
    CHANGE_COLUMNS,
    EVENT_COLUMNS,
    FAILED_COLUMNS,
    MERGE_COLUMNS,
    SNAPSHOT_COLUMNS,
    change_row,
    event_row,
    failed_row,
    snapshot_row,
)
from pipeline.sinks.clickhouse.wire import (
    FORMAT,
    Unencodable,
    change_wire,
    failed_wire,
    merge_wire,
    pack,
    pack_each,
    snapshot_wire,
)
from pipeline.wire.change import Change
from pipeline.wire.dead_letter import DeadLetter
from pipeline.wire.records import RoutedEvent, encoder, routed_decoder
from pipeline.wire.snapshot import Snapshot

T = datetime(2026, 11, 24, 18, 31, 41, 242951, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
UNICODE = 'Zoë 東京 🛒 \u0301e "quoted" back\\slash tab\t nl\n nul\x00 bell\x07'


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    migrate(client)
    yield client
    client.close()


def routed(event: Event, cid: str = "c1") -> Event:
    """Through the topic's encoding and back, as the sink sees an event."""
    rec = routed_decoder.decode(encoder.encode(RoutedEvent(customer_id=cid, event=event)))
    assert isinstance(rec, RoutedEvent)
    return rec.event


def events() -> list[Event]:
    ctx = {"campaign": {"name": UNICODE, "source": "x"}, "page": {"url": "https://e.x/?a=1&b=é"}}
    nested = {
        "a": [1, 2.5, None, True, {"b": [[], {}]}],
        "u": UNICODE,
        "big": 2**62,
        "f": 1e-7,
        "neg": -0.0,
    }
    products = [
        {"sku": "s1", "category": "shoes", "brand": UNICODE, "quantity": 2, "price": 19.99},
        {"product_id": 7, "quantity": True, "price": "0.125"},  # bool quantity, half-even
        {"sku": None, "quantity": -3, "price": None},  # quantity falls back to 1
        {"sku": "s4", "quantity": "2", "price": "abc"},  # unparsable price: 0.00
        "not a product",
        {"sku": "s5", "quantity": 4_294_967_295, "price": 0.135},
    ]
    return [
        Track(
            message_id="t1",
            anonymous_id="a1",
            event="Product Viewed",
            timestamp=T,
            received_at=T,
            properties=nested,
            context=ctx,
            source="web",
        ),
        Track(
            message_id="t2",
            user_id=UNICODE,
            event="Order Completed",
            timestamp=T,
            received_at=T,
            properties={"revenue": 1234.565, "order_id": "o1", "products": products},
        ),
        Track(
            message_id="t3",
            event="Order Completed",
            timestamp=T.astimezone(IST),
            properties={"revenue": None, "total": "-5.5", "orderId": 42},
        ),
        Track(
            message_id="t4", event="Order Completed", properties={"revenue": 99_999_999_999_999.99}
        ),
        Track(message_id="t5", event="Order Completed", properties={"revenue": "Infinity"}),
        Page(
            message_id="p1",
            name=None,
            timestamp=datetime(1969, 7, 20, 20, 17, 40, 999999, tzinfo=UTC),
            received_at=T,
            context={"campaign": "not a dict"},
        ),
        Page(
            message_id="p2",
            name=UNICODE,
            category="c",
            timestamp=T.astimezone(PST),
            received_at=datetime(2200, 1, 1, 0, 0, 0, 1500, tzinfo=UTC),
            replayed=True,
        ),
        Screen(message_id="s1", name="Home", properties={"x": UNICODE}),
        Identify(message_id="i1", anonymous_id="a1", traits={"email": "x"}, context=ctx),
        Alias(message_id="al1", previous_id="old"),
        Group(message_id="g1", user_id="u1", group_id="acme", traits={"plan": "pro"}),
        Group(message_id="g2", user_id="u1", group_id="initech"),
        CookieSync(message_id="cs1", cookie_id="ck", linked_type="partner", linked_id="p"),
        Email(message_id="e1", action="open", campaign_id=UNICODE, email="h", timestamp=T),
        Email(message_id="e2", action="click", context=ctx),
        PosTransaction(
            message_id="pos1",
            transaction_id="tx",
            store_id="st",
            total=1e9,
            items=[
                LineItem(sku="a", category=UNICODE, price=0.005, quantity=100_000),
                LineItem(sku="b", brand="B", price=2.675),
            ],
            loyalty_id="L1",
        ),
        Consent(message_id="co1", purpose="sms", status="revoked"),
        Support(message_id="su1", kind="complaint", topic="late"),
        Identify(),  # no id, no times: EPOCH and empty strings
    ]


def same(
    ch: Client,
    table: str,
    columns: list[str],
    old: list[list[Any]],
    new: list[list[Any]],
    order: str,
) -> list[tuple[Any, ...]]:
    """Insert both ways into two copies of ``table``; return the rows after asserting equality."""
    for copy in (f"old_{table}", f"new_{table}"):
        ch.command(f"DROP TABLE IF EXISTS {copy}")
        ch.command(f"CREATE TABLE {copy} AS {table} ENGINE = MergeTree ORDER BY tuple()")
    ch.insert(f"old_{table}", old, column_names=columns)
    ch.raw_insert(f"new_{table}", columns, insert_block=pack(new), fmt=FORMAT)
    cols = ", ".join(f"`{c}`" for c in columns)
    got_old = ch.query(f"SELECT {cols} FROM old_{table} ORDER BY {order}").result_rows
    got_new = ch.query(f"SELECT {cols} FROM new_{table} ORDER BY {order}").result_rows
    assert len(got_new) == len(old)
    assert got_new == got_old
    text = f"SELECT {cols} FROM {{}} ORDER BY {order} FORMAT TabSeparated"  # exact bytes too
    assert ch.raw_query(text.format(f"new_{table}")) == ch.raw_query(text.format(f"old_{table}"))
    return got_new


def test_events_match_the_tuple_rows(ch: Client) -> None:
    evs = [routed(e) for e in events()]
    old = [event_row(e, f"c{i}", i % 3, i) for i, e in enumerate(evs)]
    new = [event_wire(e, f"c{i}", i % 3, i) for i, e in enumerate(evs)]
    rows = same(ch, "events", EVENT_COLUMNS, old, new, "kafka_offset")
    by_id = {r[0]: r for r in rows}
    assert by_id["t2"][EVENT_COLUMNS.index("items.quantity")] == [2, 1, 1, 1, 4_294_967_295]
    assert by_id["t2"][EVENT_COLUMNS.index("revenue")] == Decimal("1234.56")  # half-even
    assert by_id["p1"][EVENT_COLUMNS.index("event_time")].year == 1969
    assert (
        by_id["t1"][EVENT_COLUMNS.index("properties")]
        == msgspec.json.encode(
            evs[0].properties  # type: ignore[union-attr]
        ).decode()
    )


def test_events_wire_equals_the_converted_reference_row() -> None:
    for i, e in enumerate(routed(e) for e in events()):
        assert event_wire(e, "c", 1, i) == event_row_wire(event_row(e, "c", 1, i))


def test_the_lean_reading_gives_the_same_rows() -> None:
    """Straight from the record's bytes: context and properties as the record's own text."""
    for i, e in enumerate(events()):
        value = encoder.encode(RoutedEvent(customer_id="c", event=e))
        lean = routed_wire(routed_reader.decode(value), 1, i)
        assert lean is not None
        assert lean == event_wire(routed(e, "c"), "c", 1, i), e


@pytest.mark.parametrize(
    "value",
    [
        b'{"k":"event","customer_id":"c","event":{"type":"future","messageId":"x"}}',
        b'{"k":"event","customer_id":"c","event":{"type":"page","context":[]}}',
        b'{"k":"event","customer_id":"c","event":{"type":"track","event":"e","properties":null}}',
    ],
)
def test_unusual_records_are_left_to_the_contract(value: bytes) -> None:
    assert routed_wire(routed_reader.decode(value), 0, 0) is None


def test_subclasses_take_the_reference_path() -> None:
    class Custom(Track, tag="track", kw_only=True):
        pass

    e = Custom(message_id="x", event="Order Completed", timestamp=T, properties={"revenue": 3})
    assert event_wire(e, "c", 0, 0) == event_row_wire(event_row(e, "c", 0, 0))


def letter(value: bytes, index: int | None, at: datetime) -> tuple[bytes, list[Any]]:
    dl = DeadLetter(
        original=value,
        error_type="schema",
        reason=UNICODE,
        source="batch",
        received_at=at,
        index=index,
    )
    return value, dl.headers()


def test_failed_events_match(ch: Client) -> None:
    letters = [
        letter(b'{"type":"track","messageId":"m1","anonymousId":"a","userId":"u"}', 3, T),
        letter(b"not json \xff\xfe", None, T.astimezone(IST)),
        letter('{"type": 5, "messageId": "é"}'.encode(), 0, datetime(1999, 1, 1, tzinfo=UTC)),
        letter(b"", 4_294_967_295, T),
    ]
    old = [failed_row(v, h, 1, i) for i, (v, h) in enumerate(letters)]
    new = [failed_wire(v, h, 1, i) for i, (v, h) in enumerate(letters)]
    same(ch, "failed_events", FAILED_COLUMNS, old, new, "kafka_offset")


def test_snapshots_changes_and_merges_match(ch: Client) -> None:
    ms = int(T.timestamp() * 1000)
    snaps = [
        Snapshot(
            customer_id="c1",
            version=7,
            updated_at=ms,
            first_seen=ms - 1,
            last_seen=ms,
            events=3,
            orders=1,
            revenue_cents=123_456,
            last_purchase=-1_000,
            email_opens=2,
            complaints=1,
            points_balance=-50,
            churn_risk=0.125,
            lifetime_value=1e6,
            segment="vip",
            loyalty_stage=UNICODE,
            merged_into="",
            loyalty_tier="gold",
            segments=[UNICODE, "b"],
        ),
        Snapshot(customer_id="c2", version=2**64 - 1, updated_at=0, revenue_cents=-(10**17)),
    ]
    snaps = [msgspec.json.decode(msgspec.json.encode(s), type=Snapshot) for s in snaps]
    same(
        ch,
        "profile_snapshots",
        SNAPSHOT_COLUMNS,
        [snapshot_row(s) for s in snaps],
        [snapshot_wire(s) for s in snaps],
        "customer_id",
    )

    changes = [
        Change(
            change_id="x1",
            customer_id="c1",
            kind="segment",
            name=UNICODE,
            action="enter",
            version=3,
            at=ms,
            reason=UNICODE,
        ),
        Change(
            change_id="x2",
            customer_id="c2",
            kind="stage",
            name="loyal",
            action="change",
            previous="new",
            at=-1,
        ),
    ]
    same(
        ch,
        "segment_changes",
        CHANGE_COLUMNS,
        [change_row(c, 2, i) for i, c in enumerate(changes)],
        [change_wire(c, 2, i) for i, c in enumerate(changes)],
        "kafka_offset",
    )

    merges = [
        ("a1", "s1", T.isoformat(), "e1"),
        ("a2", "s2", T.astimezone(IST).isoformat(), UNICODE),
    ]
    same(
        ch,
        "customer_merges",
        MERGE_COLUMNS,
        [list(m) for m in merges],
        [merge_wire(*m) for m in merges],
        "absorbed",
    )


@pytest.mark.parametrize(
    "event",
    [
        Track(event="Order Completed", properties={"revenue": 10**17}),  # over Decimal(18, 2)
        Track(event="Order Completed", properties={"revenue": "NaN"}),
        Track(event="Order Completed", properties={"products": [{"quantity": 2**32}]}),
        Track(event="Order Completed", properties={"products": [{"price": -(10**16)}]}),
    ],
)
def test_values_a_column_cannot_hold_are_unencodable(event: Event) -> None:
    with pytest.raises(Unencodable):
        event_wire(event, "c", 0, 0)


def test_other_unencodable_values() -> None:
    with pytest.raises(Unencodable):
        merge_wire("a", "b", "yesterday", "e")
    with pytest.raises(Unencodable):
        change_wire(
            Change(change_id="x", customer_id="c", kind="k", name="n", action="a", at=10**20), 0, 0
        )
    with pytest.raises(Unencodable):
        snapshot_wire(Snapshot(customer_id="c", version=-1, updated_at=0))
    with pytest.raises(Unencodable):
        failed_wire(*letter(b"{}", 2**32, T), 0, 0)


def test_one_unencodable_row_does_not_break_the_others(ch: Client) -> None:
    good = event_wire(routed(Page(message_id="ok", received_at=T)), "c", 0, 1)
    bad = event_wire(routed(Page(message_id="bad", received_at=T)), "c", 0, 2)
    bad[1] = "\ud800"  # a lone surrogate cannot be encoded as UTF-8
    blob, failed = pack_each([good, bad, good])
    assert [i for i, _why in failed] == [1]
    ch.command("DROP TABLE IF EXISTS pack_each_events")
    ch.command("CREATE TABLE pack_each_events AS events ENGINE = MergeTree ORDER BY tuple()")
    ch.raw_insert("pack_each_events", EVENT_COLUMNS, insert_block=blob, fmt=FORMAT)
    assert ch.query("SELECT event_id FROM pack_each_events").result_rows == [("ok",), ("ok",)]
