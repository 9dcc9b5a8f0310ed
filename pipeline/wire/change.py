"""The payload of the ``segments.changes`` topic: one audience transition.

Produced by the profile stage (and re-sent on replays: ``change_id`` is
deterministic), consumed by the ClickHouse sink (``segment_changes``) and by
anyone reacting to audience movements; ``schemas/internal/change.schema.json``
is generated from this struct.
"""

from __future__ import annotations

import msgspec


class Change(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One audience transition: a segment entered or left, a new ladder stage or tier.

    ``change_id`` is deterministic, so a transition re-sent after a crash is
    recognisably the same one downstream.
    """

    change_id: str
    customer_id: str
    kind: str  # segment | stage | tier
    name: str  # segment name, or the new stage / tier
    action: str  # enter | exit | change
    previous: str | None = None
    version: int = 0  # profile version that made the change
    at: int = 0  # event time of the evaluation (ms)
    reason: str = ""
