"""Turning raw items into Kafka records: valid events to ``events``, the rest to the DLQ.

Shared by the HTTP collector and the file importers so both validate, enrich,
key and dead-letter identically. Valid records and dead letters of one request
go out in one producer batch: the caller acknowledges only when every one of
them is stored, so nothing is acknowledged and lost.

With ``CRM_HASH_PII`` no plain email or phone leaves here: valid events are hashed
by ``enrich`` (the semantic walk only for events whose bytes show a sign of one,
:func:`~pipeline.transforms.redact.may_hold_pii`), dead letters by
:meth:`DeadLetter.protected`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from pipeline.config import Settings
from pipeline.errors import InvalidEvent, TerminalError
from pipeline.events import EVENT_TYPES, Envelope, Event, event_type
from pipeline.kafka.producer import Record
from pipeline.metrics import DEAD_LETTERED, EVENTS_IN
from pipeline.transforms.enrich import enrich, names_a_phone, stable_message_id
from pipeline.transforms.identifiers import strongest
from pipeline.transforms.redact import may_hold_pii, redact_tree
from pipeline.transforms.request_context import RequestContext
from pipeline.transforms.validate import (
    MALFORMED,
    check_event_time,
    check_rules,
    decode_event,
    malformed,
)
from pipeline.wire.dead_letter import DeadLetter

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Rejection:
    index: int
    error_type: str
    reason: str


@dataclass
class Prepared:
    """What one request turns into: records to publish and per-item outcomes.

    ``warnings`` are (index, message) of fields dropped from accepted events.
    """

    records: list[Record] = field(default_factory=list)
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    types: dict[str, int] = field(default_factory=dict)
    warnings: list[tuple[int, str]] = field(default_factory=list)


_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])
# Top-level fields each type reads; anything else a client sent is kept verbatim in the
# published record (the archive holds what was sent), except the write key, a secret.
_KNOWN = {
    cls: frozenset(f.encode_name for f in msgspec.structs.fields(cls)) | {"type", "writeKey"}
    for cls in EVENT_TYPES
}


def _with_unknown_fields(
    encoded: bytes, raw: bytes | memoryview, cls: type, salt: str | None = None
) -> bytes:
    """``encoded`` plus the top-level fields of ``raw`` that the contract does not name.

    With ``salt`` their values are searched for emails and phones (``redact_tree``).
    """
    known = _KNOWN.get(cls)
    if known is None:
        return encoded
    try:
        fields = _top_level.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return encoded
    extra: list[tuple[str, msgspec.Raw | bytes]] = [
        (k, v) for k, v in fields.items() if k not in known
    ]
    if not extra:
        return encoded
    if salt is not None:
        extra = [(k, _redacted_raw(k, v, salt)) for k, v in extra]
    parts = b",".join(_encoder.encode(k) + b":" + bytes(v) for k, v in extra)
    return encoded[:-1] + b"," + parts + b"}"


def _redacted_raw(key: str, value: msgspec.Raw | bytes, salt: str) -> msgspec.Raw | bytes:
    try:
        decoded = msgspec.json.decode(value)
    except MALFORMED as exc:  # invalid UTF-8 the event's own decoder skipped over
        raise InvalidEvent(f"{key}: {malformed(exc)}", "malformed") from None
    redacted = redact_tree({key: decoded}, salt)[key]
    return value if redacted is decoded else _encoder.encode(redacted)


def _request_scan(request: RequestContext | None) -> bool:
    """Whether what a request adds to each of its events (batch context, user agent) may
    hold an email or a phone: then every event of it is searched."""
    if request is None:
        return False
    ua = request.user_agent
    if ua and "@" in ua:
        return True
    return bool(request.batch_context) and may_hold_pii(_encoder.encode(request.batch_context))


class Ingestor:
    """Validates, enriches and routes items; holds no connection itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events_topic = settings.topic("events")
        self.dlq_topic = settings.topic("events.dlq")
        self._salt = settings.pii_salt.get_secret_value()
        self._max_age = timedelta(days=settings.event_max_age_days)
        self._max_ahead = timedelta(seconds=settings.event_max_ahead_s)

    def prepare_raw(
        self,
        raws: Iterable[bytes | memoryview],
        *,
        source: str,
        expected: type[Envelope] | None = None,
        batch_sent_at: datetime | None = None,
        received_at: datetime | None = None,
        out: Prepared | None = None,
        request: RequestContext | None = None,
    ) -> Prepared:
        """Decode and validate JSON items (one per event)."""
        out = out or Prepared()
        received_at = received_at or datetime.now(UTC)
        limit = self.settings.max_event_bytes
        hash_pii = self.settings.hash_pii
        scan_all = hash_pii and _request_scan(request)
        for index, raw in enumerate(raws):
            try:
                if len(raw) > limit:
                    raise TerminalError(f"event is {len(raw)} bytes, limit is {limit}", "too_large")
                event = decode_event(raw, expected)
                scan = hash_pii and (scan_all or may_hold_pii(raw) or names_a_phone(event))
                self._add_valid(
                    out, event, raw, source, batch_sent_at, received_at, index, request, True, scan
                )
            except TerminalError as exc:
                self.add_rejected(out, bytes(raw), exc, source, received_at, index)
        return out

    def prepare_events(
        self,
        items: Iterable[tuple[bytes, Event | TerminalError]],
        *,
        source: str,
        received_at: datetime | None = None,
    ) -> Prepared:
        """Route items already mapped to events (webhooks, CSV rows); errors are dead-lettered."""
        out = Prepared()
        received_at = received_at or datetime.now(UTC)
        for index, (raw, item) in enumerate(items):
            try:
                if isinstance(item, TerminalError):
                    raise item
                check_rules(item)
                scan = self.settings.hash_pii and (may_hold_pii(raw) or names_a_phone(item))
                self._add_valid(out, item, raw, source, None, received_at, index, scan=scan)
            except TerminalError as exc:
                self.add_rejected(out, raw, exc, source, received_at, index)
        return out

    def _add_valid(
        self,
        out: Prepared,
        event: Event,
        raw: bytes | memoryview,
        source: str,
        batch_sent_at: datetime | None,
        received_at: datetime,
        index: int,
        request: RequestContext | None = None,
        raw_is_event: bool = False,
        scan: bool = True,
    ) -> None:
        """Publish one valid event; ``raw_is_event``: ``raw`` is the client's JSON of it;
        ``scan``: search it for emails and phones by semantics (``enrich``)."""
        warnings: list[str] = []
        try:
            enriched = enrich(
                event,
                received_at=received_at,
                source=source,
                message_id=event.message_id or stable_message_id(raw, source, index),
                batch_sent_at=batch_sent_at,
                salt=self._salt,
                hash_pii=self.settings.hash_pii,
                request=request,
                warnings=warnings,
                scan=scan,
            )
        except OverflowError:  # clock-skew correction of a time near year 1 or 9999
            raise InvalidEvent("timestamp or sentAt out of any usable range", "rule") from None
        check_event_time(enriched.timestamp, received_at, self._max_age, self._max_ahead)
        key = strongest(enriched.identities)
        out.records.append(
            Record(
                self.events_topic,
                f"{key[0]}:{key[1]}".encode() if key else None,
                _with_unknown_fields(
                    _encoder.encode(enriched), raw, type(event), self._salt if scan else None
                )
                if raw_is_event
                else _encoder.encode(enriched),
            )
        )
        out.warnings.extend((index, w) for w in warnings)
        kind = event_type(enriched)
        out.types[kind] = out.types.get(kind, 0) + 1
        out.accepted += 1

    def add_rejected(
        self,
        out: Prepared,
        raw: bytes,
        exc: TerminalError,
        source: str,
        received_at: datetime,
        index: int | None,
    ) -> None:
        letter = DeadLetter.protected(
            raw,
            error_type=exc.error_type,
            reason=exc.reason,
            source=source,
            received_at=received_at,
            index=index,
            salt=self._salt if self.settings.hash_pii else None,
        )
        out.records.append(Record(self.dlq_topic, None, letter.value, letter.headers()))
        out.rejected.append(Rejection(index or 0, exc.error_type, exc.reason))

    @staticmethod
    def count(prepared: Prepared, source: str) -> None:
        """Update metrics once the batch is acknowledged."""
        EVENTS_IN.labels(source).inc(prepared.accepted)
        for rej in prepared.rejected:
            DEAD_LETTERED.labels(rej.error_type).inc()
