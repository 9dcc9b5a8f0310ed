"""Kafka records to ClickHouse rows: pure functions, one per target table."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from pipeline.events import (
    CHANNEL_BY_TYPE,
    Email,
    Event,
    Group,
    Page,
    PosTransaction,
    Screen,
    Track,
    event_type,
)
from pipeline.wire.change import Change
from pipeline.wire.dead_letter import from_headers
from pipeline.wire.snapshot import Snapshot

EVENT_COLUMNS = [
    "event_id",
    "customer_id",
    "type",
    "name",
    "channel",
    "source",
    "event_time",
    "received_at",
    "anonymous_id",
    "user_id",
    "campaign",
    "store_id",
    "order_id",
    "revenue",
    "items.sku",
    "items.category",
    "items.brand",
    "items.quantity",
    "items.price",
    "properties",
    "context",
    "replayed",
    "kafka_partition",
    "kafka_offset",
]
FAILED_COLUMNS = [
    "received_at",
    "source",
    "error_type",
    "reason",
    "batch_index",
    "type",
    "event_id",
    "anonymous_id",
    "user_id",
    "original",
    "kafka_partition",
    "kafka_offset",
]
SNAPSHOT_COLUMNS = [
    "customer_id",
    "version",
    "updated_at",
    "first_seen",
    "last_seen",
    "events",
    "orders",
    "revenue",
    "last_purchase",
    "email_opens",
    "complaints",
    "points_balance",
    "churn_risk",
    "lifetime_value",
    "segment",
    "loyalty_stage",
    "merged_into",
    "loyalty_tier",
    "segments",
]
CHANGE_COLUMNS = [
    "change_id",
    "customer_id",
    "kind",
    "name",
    "action",
    "previous",
    "version",
    "at",
    "reason",
    "kafka_partition",
    "kafka_offset",
]
MERGE_COLUMNS = ["absorbed", "survivor", "merged_at", "event_id"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_enc = msgspec.json.Encoder()


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    except Exception:
        return Decimal("0.00")


def _name(event: Event) -> str:
    if isinstance(event, Track):
        return event.event
    if isinstance(event, Page | Screen):
        return event.name or ""
    if isinstance(event, Email):
        return event.action
    if isinstance(event, Group):
        return event.group_id
    return event_type(event)


def _campaign(event: Event) -> str:
    if isinstance(event, Email):
        return event.campaign_id or ""
    campaign = event.context.get("campaign") if event.context else None
    return str(campaign.get("name") or "") if isinstance(campaign, dict) else ""


def event_row(event: Event, customer_id: str, partition: int, offset: int) -> list[Any]:
    skus: list[str] = []
    cats: list[str] = []
    brands: list[str] = []
    qtys: list[int] = []
    prices: list[Decimal] = []
    revenue, store, order = Decimal("0.00"), "", ""
    props: dict[str, Any] = {}
    if isinstance(event, PosTransaction):
        for li in event.items:
            skus.append(li.sku)
            cats.append(li.category or "")
            brands.append(li.brand or "")
            qtys.append(li.quantity)
            prices.append(_money(li.price))
        revenue, store, order = _money(event.total), event.store_id, event.transaction_id
    elif isinstance(event, Track):
        props = event.properties
        if event.event == "Order Completed":
            revenue = _money(
                props.get("revenue") if props.get("revenue") is not None else props.get("total")
            )
            order = str(props.get("order_id") or props.get("orderId") or "")
            for p in props.get("products") or []:
                if isinstance(p, dict):
                    skus.append(str(p.get("sku") or p.get("product_id") or ""))
                    cats.append(str(p.get("category") or ""))
                    brands.append(str(p.get("brand") or ""))
                    q = p.get("quantity")
                    qtys.append(q if isinstance(q, int) and q > 0 else 1)
                    prices.append(_money(p.get("price")))
    elif isinstance(event, Page | Screen):
        props = event.properties
    elif isinstance(event, Group):
        props = event.traits  # the group's traits; the group id is the name
    kind = event_type(event)
    return [
        event.message_id or "",
        customer_id,
        kind,
        _name(event),
        CHANNEL_BY_TYPE.get(kind, kind),
        event.source or "",
        event.timestamp or event.received_at or EPOCH,
        event.received_at or EPOCH,
        event.anonymous_id or "",
        event.user_id or "",
        _campaign(event),
        store,
        order,
        revenue,
        skus,
        cats,
        brands,
        qtys,
        prices,
        _enc.encode(props).decode(),
        _enc.encode(event.context).decode(),
        int(event.replayed),
        partition,
        offset,
    ]


class _Readable(msgspec.Struct, rename="camel"):
    type: str = ""
    message_id: str = ""
    anonymous_id: str = ""
    user_id: str = ""


def failed_row(value: bytes, headers: Any, partition: int, offset: int) -> list[Any]:
    letter = from_headers(value, headers)
    try:
        readable = msgspec.json.decode(value, type=_Readable, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError):
        readable = _Readable()
    return [
        letter.received_at,
        letter.source,
        letter.error_type,
        letter.reason,
        letter.index,
        readable.type if isinstance(readable.type, str) else "",
        str(readable.message_id or ""),
        str(readable.anonymous_id or ""),
        str(readable.user_id or ""),
        value.decode("utf-8", errors="replace"),
        partition,
        offset,
    ]


def _ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None


def snapshot_row(s: Snapshot) -> list[Any]:
    return [
        s.customer_id,
        s.version,
        _ts(s.updated_at),
        _ts(s.first_seen),
        _ts(s.last_seen),
        s.events,
        s.orders,
        Decimal(s.revenue_cents) / 100,
        _ts(s.last_purchase),
        s.email_opens,
        s.complaints,
        s.points_balance,
        s.churn_risk,
        s.lifetime_value,
        s.segment,
        s.loyalty_stage,
        s.merged_into,
        s.loyalty_tier,
        s.segments,
    ]


def change_row(c: Change, partition: int, offset: int) -> list[Any]:
    return [
        c.change_id,
        c.customer_id,
        c.kind,
        c.name,
        c.action,
        c.previous or "",
        c.version,
        _ts(c.at),
        c.reason,
        partition,
        offset,
    ]
