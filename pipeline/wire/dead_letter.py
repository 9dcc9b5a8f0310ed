"""The dead-letter record: original bytes plus why, where and when.

Follows Kafka Connect's convention: the record value is the original, and the error
context travels in headers, so a fixed event can be re-published. With
``CRM_HASH_PII`` (:meth:`DeadLetter.protected`) the original and the reason have their
emails and phones hashed the way valid events have them (``transforms.redact``), so a
re-published dead letter links to the same customer; the shape (JSON members, the text
around an address) and the reason stay readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from pipeline.transforms.redact import redact_dead_letter, redact_text

HEADER_PREFIX = "crm.error."
MAX_ORIGINAL_BYTES = 1024 * 1024


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    original: bytes
    error_type: str
    reason: str
    source: str
    received_at: datetime
    index: int | None = None

    @classmethod
    def protected(
        cls,
        original: bytes,
        *,
        error_type: str,
        reason: str,
        source: str,
        received_at: datetime,
        index: int | None = None,
        salt: str | None,
    ) -> DeadLetter:
        """A dead letter whose original and reason have emails and phones hashed with
        ``salt``; ``salt=None`` (``CRM_HASH_PII=false``) keeps both as they were."""
        if salt is not None:
            original = redact_dead_letter(original[:MAX_ORIGINAL_BYTES], salt)
            reason = redact_text(reason, salt)
        return cls(
            original=original,
            error_type=error_type,
            reason=reason,
            source=source,
            received_at=received_at,
            index=index,
        )

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
