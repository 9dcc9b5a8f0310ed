"""Rows for ClickHouse to parse: MsgPack, one flat value sequence per batch.

(``event_wire.py`` has the ``events`` table's rows, which run for every event.)

The sink no longer builds Python ``datetime``/``Decimal`` columns for
clickhouse-connect to serialise value by value; it lists each row's values in
the table's column order, already in the form ClickHouse's ``MsgPack`` input
stores them (``DateTime64(3)`` as milliseconds, ``Decimal(18, 2)`` as cents, JSON
columns as UTF-8 bytes), and msgspec encodes the whole batch in one call.
The values are the same as those of the tuple rows in ``rows.py`` (a unit test
inserts both and compares): those stay the reference, and the backfill uses them.

ClickHouse's MsgPack input wraps integers that do not fit a column instead of
failing, so every value that comes from outside the pipeline (amounts, quantities,
timestamps, header fields) is range-checked here; a row that fails raises
``Unencodable`` and becomes a ``failed_events`` row instead of breaking its batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from math import floor
from typing import Any

import msgspec
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from pipeline.sinks.clickhouse.rows import EPOCH, _Readable
from pipeline.wire.change import Change
from pipeline.wire.dead_letter import from_headers
from pipeline.wire.snapshot import Snapshot

FORMAT = "MsgPack"
SINK_ERROR = "sink"  # failed_events.error_type of rows the sink itself could not store
SINK_SOURCE = "clickhouse-sink"
MS = timedelta(milliseconds=1)
U16, U32, U64 = 2**16, 2**32, 2**64
I64 = 2**63
CENTS_MAX = 10**18  # Decimal(18, 2) holds 18 digits
MS_MIN = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // MS  # the range Python datetimes cover
MS_MAX = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // MS
_pack = msgspec.msgpack.Encoder()


class Unencodable(ValueError):
    """A value the target column cannot hold (the old path failed the whole insert)."""


def ticks(value: datetime) -> int:
    """Milliseconds since the epoch, truncated like clickhouse-connect's ``DateTime64(3)``."""
    if value.tzinfo is not None:
        return (value - EPOCH) // MS
    seconds = floor(value.timestamp())  # naive: local time, as clickhouse-connect reads it
    return (seconds * 1_000_000 + value.microsecond) // 1000


def ms(value: int) -> int:
    """A millisecond timestamp as ``DateTime64(3)``; outside datetime's range is unencodable."""
    if not MS_MIN <= value <= MS_MAX:
        raise Unencodable(f"timestamp {value} ms is outside years 1-9999")
    return value


def ms_or_none(value: int | None) -> int | None:
    return None if value is None else ms(value)


def cents(value: Decimal) -> int:
    """A ``Decimal(18, 2)`` amount (already quantized to cents) as its stored integer."""
    try:
        out = int(value * 100)
    except (ValueError, OverflowError, ArithmeticError) as exc:  # NaN, Infinity
        raise Unencodable(f"amount {value} is not a number") from exc
    if not -CENTS_MAX < out < CENTS_MAX:
        raise Unencodable(f"amount {value} does not fit Decimal(18, 2)")
    return out


def uint(value: int, bound: int, what: str) -> int:
    if not 0 <= value < bound:
        raise Unencodable(f"{what} {value} is out of range")
    return value


def int64(value: int, what: str) -> int:
    if not -I64 <= value < I64:
        raise Unencodable(f"{what} {value} is out of range")
    return value


def failed_wire(value: bytes, headers: Any, partition: int, offset: int) -> list[Any]:
    """``rows.failed_row`` in wire form."""
    letter = from_headers(value, headers)
    try:
        readable = msgspec.json.decode(value, type=_Readable, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError):
        readable = _Readable()
    return [
        ticks(letter.received_at),
        letter.source,
        letter.error_type,
        letter.reason,
        None if letter.index is None else uint(letter.index, U32, "batch index"),
        readable.type if isinstance(readable.type, str) else "",
        str(readable.message_id or ""),
        str(readable.anonymous_id or ""),
        str(readable.user_id or ""),
        value.decode("utf-8", errors="replace"),
        partition,
        offset,
    ]


class _RoutedReadable(msgspec.Struct):
    event: _Readable = msgspec.field(default_factory=_Readable)


def sink_failure_wire(
    value: bytes, reason: str, partition: int, offset: int, at_ms: int
) -> list[Any]:
    """A ``failed_events`` row for a record the sink could not decode or store."""
    try:
        readable = msgspec.json.decode(value, type=_RoutedReadable, strict=False).event
    except (msgspec.DecodeError, msgspec.ValidationError):
        readable = _Readable()
    return [
        at_ms,
        SINK_SOURCE,
        SINK_ERROR,
        reason[:4000],
        None,
        readable.type if isinstance(readable.type, str) else "",
        str(readable.message_id or ""),
        str(readable.anonymous_id or ""),
        str(readable.user_id or ""),
        value.decode("utf-8", errors="replace"),
        partition,
        offset,
    ]


def message_failure(m: Any, reason: str) -> list[Any]:
    """``sink_failure_wire`` for a consumed Kafka message (stamped with its log time)."""
    kind, at_ms = m.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        at_ms = int(time.time() * 1000)
    return sink_failure_wire(
        m.value() or b"",
        reason.encode("utf-8", "replace").decode(),
        m.partition() or 0,
        m.offset() or 0,
        at_ms,
    )


def snapshot_wire(s: Snapshot) -> list[Any]:
    """``rows.snapshot_row`` in wire form."""
    return [
        s.customer_id,
        uint(s.version, U64, "version"),
        ms(s.updated_at),
        ms_or_none(s.first_seen),
        ms_or_none(s.last_seen),
        uint(s.events, U64, "events"),
        uint(s.orders, U64, "orders"),
        cents(Decimal(s.revenue_cents) / 100),
        ms_or_none(s.last_purchase),
        uint(s.email_opens, U64, "email opens"),
        uint(s.complaints, U64, "complaints"),
        int64(s.points_balance, "points balance"),
        s.churn_risk,
        s.lifetime_value,
        s.segment,
        s.loyalty_stage,
        s.merged_into,
        s.loyalty_tier,
        s.segments,
    ]


def change_wire(c: Change, partition: int, offset: int) -> list[Any]:
    """``rows.change_row`` in wire form."""
    return [
        c.change_id,
        c.customer_id,
        c.kind,
        c.name,
        c.action,
        c.previous or "",
        uint(c.version, U64, "version"),
        ms(c.at),
        c.reason,
        partition,
        offset,
    ]


def merge_wire(absorbed: str, survivor: str, at: str, event_id: str) -> list[Any]:
    """A ``customer_merges`` row; ``at`` is the decision's ISO time, as the old path parsed it."""
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError as exc:
        raise Unencodable(f"merge time {at!r} is not an ISO timestamp") from exc
    return [absorbed, survivor, ticks(parsed), event_id]


def pack(rows: Sequence[Sequence[Any]]) -> bytes:
    """The rows' values back to back, as ClickHouse's ``MsgPack`` input format reads them."""
    flat: list[Any] = []
    for row in rows:
        flat.extend(row)
    data = _pack.encode(flat)  # an array header, then the values: drop the header
    head = data[0]
    return data[1 if head < 0xDC else 3 if head == 0xDC else 5 :]


def pack_each(rows: Sequence[Sequence[Any]]) -> tuple[bytes, list[tuple[int, str]]]:
    """Like ``pack``, skipping rows msgspec cannot encode: (blob, [(index, reason)])."""
    try:
        return pack(rows), []
    except (TypeError, ValueError, OverflowError, UnicodeError):
        pass
    good: list[Sequence[Any]] = []
    bad: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        try:
            _pack.encode(list(row))
        except (TypeError, ValueError, OverflowError, UnicodeError) as exc:
            bad.append((i, f"unencodable row: {exc}"))
        else:
            good.append(row)
    return pack(good), bad
