"""The payload of the ``profiles`` topic: one profile summary per change.

Produced by the stream worker's profile stage, consumed by the ClickHouse sink
(``profile_snapshots``); ``schemas/internal/snapshot.schema.json`` is generated
from this struct.
"""

from __future__ import annotations

import msgspec


class Snapshot(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The profile summary the profile stage publishes on ``crm.profiles``."""

    customer_id: str
    version: int
    updated_at: int
    first_seen: int | None = None
    last_seen: int | None = None
    events: int = 0
    orders: int = 0
    revenue_cents: int = 0
    last_purchase: int | None = None
    email_opens: int = 0
    complaints: int = 0
    points_balance: int = 0
    churn_risk: float | None = None
    lifetime_value: float | None = None
    segment: str = ""
    loyalty_stage: str = ""
    merged_into: str = ""
    loyalty_tier: str = ""
    segments: list[str] = []
