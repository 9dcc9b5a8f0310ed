"""``events`` rows in wire form (see ``wire.py``), the sink's per-event hot path.

Two ways in, the same row out (tests compare both with ``rows.event_row``):

* ``routed_wire``: the record decoded into ``SinkRouted``, a flat struct of only the
  fields the table reads, with ``context`` and ``properties`` kept as the record's own
  JSON text (``msgspec.Raw``) instead of being built into dicts and encoded again.
  ``events.by_customer`` is written by msgspec (the workers' ``encoder``), and msgspec's
  output decodes and re-encodes to the same bytes, so the text stored is the text the
  old path produced. Anything unusual (a type outside the contract, a non-object
  ``context``/``properties``) returns None and takes the other way;
* ``event_wire``: from a contract ``Event`` (decoded by ``routed_decoder``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from pipeline.events import (
    CHANNEL_BY_TYPE,
    EVENT_TYPES,
    Email,
    Event,
    Group,
    Id,
    LineItem,
    Money,
    Name,
    Page,
    PosTransaction,
    Screen,
    Timestamp,
    Track,
)
from pipeline.sinks.clickhouse.rows import EPOCH, _money, event_row
from pipeline.sinks.clickhouse.wire import MS, U32, cents, ticks, uint
from pipeline.wire.records import RoutedEvent, routed_decoder

_json = msgspec.json.Encoder()


def _order(props: dict[str, Any]) -> tuple[Any, ...]:
    """Store, order id, revenue and item columns of a ``Track`` "Order Completed"."""
    revenue = cents(
        _money(props.get("revenue") if props.get("revenue") is not None else props.get("total"))
    )
    order = str(props.get("order_id") or props.get("orderId") or "")
    skus, cats, brands, qtys, prices = [], [], [], [], []
    for p in props.get("products") or []:
        if isinstance(p, dict):
            skus.append(str(p.get("sku") or p.get("product_id") or ""))
            cats.append(str(p.get("category") or ""))
            brands.append(str(p.get("brand") or ""))
            q = p.get("quantity")
            if isinstance(q, int) and q > 0:
                qtys.append(uint(int(q), U32, "quantity"))  # int(True) is 1
            else:
                qtys.append(1)
            prices.append(cents(_money(p.get("price"))))
    return "", order, revenue, skus, cats, brands, qtys, prices


def _receipt(event: PosTransaction | _Event) -> tuple[Any, ...]:
    skus, cats, brands, qtys, prices = [], [], [], [], []
    for li in event.items:
        skus.append(li.sku)
        cats.append(li.category or "")
        brands.append(li.brand or "")
        qtys.append(uint(li.quantity, U32, "quantity"))
        prices.append(cents(_money(li.price)))
    revenue = cents(_money(event.total))
    return event.store_id, event.transaction_id, revenue, skus, cats, brands, qtys, prices


_NO_SALE: tuple[Any, ...] = ("", "", 0, [], [], [], [], [])  # store_id ... items.price
_KIND = {cls: str(cls.__struct_config__.tag) for cls in EVENT_TYPES}
_EMPTY = _json.encode({})


def _ticks(value: datetime) -> int:
    try:
        return (value - EPOCH) // MS
    except TypeError:  # naive
        return ticks(value)


def event_wire(event: Event, customer_id: str, partition: int, offset: int) -> list[Any]:
    """``rows.event_row`` in wire form (same columns, same values).

    Written for speed (it runs for every event): one type dispatch and no helper
    calls on the common path. Classes outside the contract take the reference path.
    """
    cls = type(event)
    kind = _KIND.get(cls)
    if kind is None:
        return event_row_wire(event_row(event, customer_id, partition, offset))
    sale = _NO_SALE
    props = _EMPTY
    campaign = ""
    if cls is Track:
        name = event.event  # type: ignore[union-attr]
        if event.properties:  # type: ignore[union-attr]
            props = _json.encode(event.properties)  # type: ignore[union-attr]
            if name == "Order Completed":
                sale = _order(event.properties)  # type: ignore[union-attr]
    elif cls is Page or cls is Screen:
        name = event.name or ""  # type: ignore[union-attr]
        if event.properties:  # type: ignore[union-attr]
            props = _json.encode(event.properties)  # type: ignore[union-attr]
    elif cls is Email:
        name = event.action  # type: ignore[union-attr]
        campaign = event.campaign_id or ""  # type: ignore[union-attr]
    elif cls is Group:
        name = event.group_id  # type: ignore[union-attr]
        if event.traits:  # type: ignore[union-attr]
            props = _json.encode(event.traits)  # type: ignore[union-attr]
    else:
        name = kind
        if cls is PosTransaction:
            sale = _receipt(event)  # type: ignore[arg-type]
    if cls is not Email and event.context:
        found = event.context.get("campaign")
        if isinstance(found, dict):
            campaign = str(found.get("name") or "")
    timestamp = event.timestamp or event.received_at
    return [
        event.message_id or "",
        customer_id,
        kind,
        name,
        CHANNEL_BY_TYPE.get(kind, kind),
        event.source or "",
        _ticks(timestamp) if timestamp else 0,
        _ticks(event.received_at) if event.received_at else 0,
        event.anonymous_id or "",
        event.user_id or "",
        campaign,
        *sale,
        props,
        _json.encode(event.context) if event.context else _EMPTY,
        int(event.replayed),
        partition,
        offset,
    ]


def event_row_wire(row: list[Any]) -> list[Any]:
    """A reference ``event_row`` converted to wire form (the general, slower path)."""
    out = list(row)
    out[6], out[7] = ticks(row[6]), ticks(row[7])
    out[13] = cents(row[13])
    out[17] = [uint(int(q), U32, "quantity") for q in row[17]]
    out[18] = [cents(p) for p in row[18]]
    out[19], out[20] = row[19].encode(), row[20].encode()
    return out


_EMPTY_RAW = msgspec.Raw(b"{}")
_KINDS = frozenset(_KIND.values())
_WITH_PROPERTIES = frozenset({"track", "page", "screen"})


class _Event(msgspec.Struct, rename="camel"):
    """Every event type's fields the ``events`` table reads (others are skipped unread)."""

    type: str = ""
    message_id: Id | None = None
    anonymous_id: Id | None = None
    user_id: Id | None = None
    timestamp: Timestamp | None = None
    received_at: Timestamp | None = None
    context: msgspec.Raw = _EMPTY_RAW
    source: str | None = None
    replayed: bool = False
    event: Name = ""  # track
    name: Name | None = None  # page, screen
    properties: msgspec.Raw = _EMPTY_RAW  # track, page, screen
    action: str = ""  # email
    campaign_id: Id | None = None  # email
    group_id: Id = ""  # group
    traits: msgspec.Raw = _EMPTY_RAW  # group
    transaction_id: Id = ""  # pos_transaction
    store_id: Id = ""
    items: list[LineItem] = []
    total: Money = 0.0


class SinkRouted(msgspec.Struct):
    """A record of ``events.by_customer`` as the sink reads it (``k`` is the record kind)."""

    k: str = ""
    customer_id: str = ""
    event: _Event | None = None
    forwarded: bool = False
    repeat: bool = False


class _Context(msgspec.Struct):
    campaign: Any = None


routed_reader = msgspec.json.Decoder(SinkRouted)
_context = msgspec.json.Decoder(_Context)


def routed_wire(rec: SinkRouted, partition: int, offset: int) -> list[Any] | None:
    """``event_wire`` for a ``SinkRouted`` event record; None: decode it as an ``Event``."""
    ev = rec.event
    if ev is None or ev.type not in _KINDS:
        return None
    kind = ev.type
    context = bytes(ev.context)
    if kind in _WITH_PROPERTIES:
        props = bytes(ev.properties)
    elif kind == "group":
        props = bytes(ev.traits)
    else:
        props = _EMPTY
    if context[:1] != b"{" or props[:1] != b"{":
        return None
    sale = _NO_SALE
    campaign = ""
    if kind == "track":
        name = ev.event
        if name == "Order Completed" and props != _EMPTY:
            sale = _order(msgspec.json.decode(props))
    elif kind == "page" or kind == "screen":
        name = ev.name or ""
    elif kind == "email":
        name = ev.action
        campaign = ev.campaign_id or ""
    elif kind == "group":
        name = ev.group_id
    else:
        name = kind
        if kind == "pos_transaction":
            sale = _receipt(ev)
    if kind != "email" and b'"campaign"' in context:
        found = _context.decode(context).campaign
        if isinstance(found, dict):
            campaign = str(found.get("name") or "")
    timestamp = ev.timestamp or ev.received_at
    return [
        ev.message_id or "",
        rec.customer_id,
        kind,
        name,
        CHANNEL_BY_TYPE.get(kind, kind),
        ev.source or "",
        _ticks(timestamp) if timestamp else 0,
        _ticks(ev.received_at) if ev.received_at else 0,
        ev.anonymous_id or "",
        ev.user_id or "",
        campaign,
        *sale,
        props,
        context,
        int(ev.replayed),
        partition,
        offset,
    ]


def read_event_record(value: bytes) -> SinkRouted | RoutedEvent | None:
    """An event record for the ``events`` table (None: another kind, or a forwarded copy)."""
    try:
        lean = routed_reader.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        full = routed_decoder.decode(value)  # the contract decides; raises if invalid
        return full if isinstance(full, RoutedEvent) and not full.forwarded else None
    return lean if lean.k == "event" and lean.event is not None and not lean.forwarded else None


def event_record_row(
    rec: SinkRouted | RoutedEvent, value: bytes, offset: int, partition: int
) -> list[Any]:
    """The ``events`` row of a record ``read_event_record`` returned."""
    if isinstance(rec, SinkRouted):
        row = routed_wire(rec, partition, offset)
        if row is not None:
            return row
        full = routed_decoder.decode(value)  # unusual: the contract's way
        if not isinstance(full, RoutedEvent):
            raise ValueError(f"not an event record: {type(full).__name__}")
        rec = full
    return event_wire(rec.event, rec.customer_id, partition, offset)
