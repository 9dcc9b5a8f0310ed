"""Decoding and validation: raw bytes in, a typed event or a precise reason out.

Type checks come from the msgspec contract in :mod:`pipeline.events`; the rules
here are the ones a type cannot express (a Segment call needs some identifier,
an ``Order Completed`` needs an order id and a numeric revenue).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from pipeline.errors import InvalidEvent
from pipeline.events import (
    SEGMENT_TYPES,
    Alias,
    ContactEnvelope,
    Envelope,
    Event,
    Track,
    event_type,
)

_decoder = msgspec.json.Decoder(Event)
# What a JSON parser raises on bytes that are not JSON: msgspec's own error, invalid
# UTF-8 inside a string, and nesting deeper than the interpreter's recursion limit.
MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
MAX_DEPTH = 32  # nesting of properties, traits, context: deeper is a bug or an attack


def malformed(exc: BaseException) -> str:
    """The reason a body is not JSON, in words a client can act on."""
    if isinstance(exc, UnicodeDecodeError):
        return f"malformed JSON: invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, RecursionError):
        return "malformed JSON: nested too deeply"
    return f"malformed JSON: {exc}"


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if dicts and lists nest more than ``limit`` levels."""
    level = [value]
    for _ in range(limit + 1):
        level = [
            v
            for x in level
            for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else ())
            if isinstance(v, dict | list)
        ]
        if not level:
            return False
    return True


_typed_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


MAX_AMOUNT = 1e9  # every money column downstream (Float64, Int64 points) holds this
MAX_QUANTITY = 1_000_000


class _Product(msgspec.Struct):
    price: Annotated[float, Meta(ge=0, le=MAX_AMOUNT)] | None = None
    quantity: Annotated[int, Meta(ge=0, le=MAX_QUANTITY)] | None = None
    product_id: str | None = None
    sku: str | None = None


class _Order(msgspec.Struct):
    order_id: Annotated[str, Meta(min_length=1)]
    revenue: Annotated[float, Meta(ge=0, le=MAX_AMOUNT)] | None = None
    total: Annotated[float, Meta(ge=0, le=MAX_AMOUNT)] | None = None
    products: list[_Product] = []


ECOMMERCE_PRODUCT_EVENTS = frozenset(
    {"Product Viewed", "Product Added", "Product Removed", "Product Clicked"}
)
ORDER_EVENTS = frozenset({"Order Completed", "Order Refunded", "Order Cancelled"})


def decode_event(raw: bytes | memoryview, expected: type[Envelope] | None = None) -> Event:
    """Decode one JSON event and apply the contract; raise InvalidEvent with the reason.

    With ``expected`` (single-type endpoints such as ``/v1/track``) the ``type``
    field may be omitted, as Segment's HTTP API allows, but must match if present.
    """
    decoder = _decoder
    if expected is not None:
        decoder = _typed_decoders.get(expected) or _typed_decoders.setdefault(
            expected, msgspec.json.Decoder(expected)
        )
    try:
        event: Event = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(str(exc), "schema") from None
    except MALFORMED as exc:
        raise InvalidEvent(malformed(exc), "malformed") from None
    check_rules(event)
    return event


def check_rules(event: Event) -> None:
    kind = event_type(event)
    for name in ("properties", "traits", "context"):
        if too_deep(getattr(event, name, None)):
            raise InvalidEvent(f"{kind}: {name} nested deeper than {MAX_DEPTH} levels", "rule")
    if isinstance(event, Alias) and not event.user_id:
        raise InvalidEvent("alias: userId is required", "rule")
    if kind in SEGMENT_TYPES and not (event.user_id or event.anonymous_id):
        raise InvalidEvent(f"{kind}: one of userId or anonymousId is required", "rule")
    if isinstance(event, ContactEnvelope) and not (
        event.user_id or event.anonymous_id or event.email or event.phone or event.loyalty_id
    ):
        raise InvalidEvent(
            f"{kind}: at least one of userId, anonymousId, email, phone or loyaltyId is required",
            "rule",
        )
    if isinstance(event, Track):
        _check_ecommerce(event.event, event.properties)


def _check_ecommerce(name: str, properties: dict[str, Any]) -> None:
    try:
        if name in ORDER_EVENTS:
            order = msgspec.convert(_normalise_keys(properties), _Order, strict=False)
            if order.revenue is None and order.total is None:
                raise InvalidEvent(
                    f"{name}: properties.revenue or properties.total is required", "rule"
                )
        elif name in ECOMMERCE_PRODUCT_EVENTS:
            product = msgspec.convert(_normalise_keys(properties), _Product, strict=False)
            if not (product.product_id or product.sku):
                raise InvalidEvent(
                    f"{name}: properties.product_id or properties.sku is required", "rule"
                )
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"{name}: {exc}".replace("`$", "`$.properties"), "rule") from None


def check_event_time(
    event_time: datetime | None, received_at: datetime, max_age: timedelta, max_ahead: timedelta
) -> None:
    """Event time within a window around receipt (``CRM_EVENT_MAX_AGE_DAYS``/``_AHEAD_S``).

    Outside it the event is dead-lettered rather than clamped: a time from year 1 or
    9999 is a client bug whose real time nobody knows, and ClickHouse's DateTime64 and
    every time-relative segment would carry the nonsense otherwise.
    """
    if event_time is None:
        return
    if event_time < received_at - max_age:
        raise InvalidEvent(
            f"timestamp {event_time.isoformat()} is more than {max_age.days} days before "
            f"receipt ({received_at.isoformat()})",
            "rule",
        )
    if event_time > received_at + max_ahead:
        raise InvalidEvent(
            f"timestamp {event_time.isoformat()} is more than {int(max_ahead.total_seconds())} s "
            f"after receipt ({received_at.isoformat()})",
            "rule",
        )


def _normalise_keys(properties: dict[str, Any]) -> dict[str, Any]:
    """Segment's spec uses snake_case; some trackers send camelCase (orderId)."""
    out = dict(properties)
    for camel, snake in (("orderId", "order_id"), ("productId", "product_id")):
        if camel in out and snake not in out:
            out[snake] = out[camel]
    products = out.get("products")
    if isinstance(products, list):
        out["products"] = [_normalise_keys(p) if isinstance(p, dict) else p for p in products]
    return out
