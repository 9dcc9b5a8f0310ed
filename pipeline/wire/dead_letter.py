"""The dead-letter record: original bytes plus why, where and when.

Follows Kafka Connect's convention: the record value is the original bytes,
untouched, and the error context travels in headers, so a fixed event can be
re-published as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

HEADER_PREFIX = "crm.error."
MAX_ORIGINAL_BYTES = 1024 * 1024


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    original: bytes
    error_type: str
    reason: str
    source: str
    received_at: datetime
    index: int | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            (HEADER_PREFIX + "type", self.error_type.encode()),
            (HEADER_PREFIX + "reason", self.reason[:4000].encode()),
            (HEADER_PREFIX + "source", self.source.encode()),
            (HEADER_PREFIX + "received_at", self.received_at.isoformat().encode()),
        ]
        if self.index is not None:
            out.append((HEADER_PREFIX + "index", str(self.index).encode()))
        return out

    @property
    def value(self) -> bytes:
        return self.original[:MAX_ORIGINAL_BYTES]


def from_headers(value: bytes, headers: Any) -> DeadLetter:
    """Rebuild a DeadLetter from a consumed Kafka record (for ClickHouse and reports)."""
    pairs: list[tuple[str, bytes]] = list(headers or [])
    h = {k[len(HEADER_PREFIX) :]: v.decode() for k, v in pairs if k.startswith(HEADER_PREFIX)}
    return DeadLetter(
        original=value,
        error_type=h.get("type", "unknown"),
        reason=h.get("reason", ""),
        source=h.get("source", ""),
        received_at=datetime.fromisoformat(h["received_at"]),
        index=int(h["index"]) if "index" in h else None,
    )
