"""The profile summary published on ``crm.profiles`` (compacted) for ClickHouse and others."""

from __future__ import annotations

import time

import msgspec

from pipeline.transforms.profile import Profile
from pipeline.wire.snapshot import Snapshot

snapshot_encoder = msgspec.json.Encoder()


def summarise(p: Profile) -> Snapshot:
    score = {k: v.value for k, v in p.scores.items()}
    a = p.audience if not p.merged_into else None
    return Snapshot(
        customer_id=p.customer_id,
        version=p.version,
        updated_at=int(time.time() * 1000),
        first_seen=p.first_seen,
        last_seen=p.last_seen,
        events=p.events,
        orders=p.orders,
        revenue_cents=p.revenue_cents,
        last_purchase=p.purchase_times[-1] if p.purchase_times else None,
        email_opens=sum(a.get("open", 0) for a in p.email.values()),
        complaints=p.support.get("complaint", 0),
        points_balance=p.points_earned - p.points_redeemed,
        churn_risk=score.get("churn_risk"),
        lifetime_value=score.get("lifetime_value"),
        segment=",".join(sorted(a.segments)) if a else "",
        loyalty_stage=a.stage if a else "",
        merged_into=p.merged_into or "",
        loyalty_tier=a.tier if a else "",
        segments=sorted(a.segments) if a else [],
    )
