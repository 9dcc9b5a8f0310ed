"""Derived audience state: ladder stage, tier and segments, and the transitions between them.

Called by the profile stage on every changed profile and on timer ticks, and by
nothing else that decides: the Kafka change topic, Redis segment sets and the
ClickHouse membership history all carry what ``apply`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.transforms.loyalty import LoyaltyConfig, stage, tier
from pipeline.transforms.profile import Audience, Profile
from pipeline.transforms.profile_view import LazyView
from pipeline.transforms.segments import SegmentConfig, memberships
from pipeline.wire.change import Change


@dataclass(frozen=True)
class AudienceRules:
    loyalty: LoyaltyConfig = field(default_factory=LoyaltyConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)


def apply(p: Profile, rules: AudienceRules, now: int) -> list[Change]:
    """Re-derive ``p.audience`` at event time ``now``; return the transitions, if any.

    A change bumps the profile version so the version-guarded Redis write lands.
    """
    old = p.audience or Audience()
    st, why = stage(p, rules.loyalty)
    tr = tier(p, rules.loyalty)
    view = LazyView(p, now)  # only the sections the segment conditions read
    view["loyalty"].update(stage=st, tier=tr)
    found = memberships(rules.segments, view, now)
    segments = {name: old.segments.get(name, now) for name in sorted(found.members)}
    if (st, tr, segments) == (old.stage, old.tier, old.segments):
        if found.next_change != old.due:
            p.audience = Audience(
                stage=st, tier=tr, segments=segments, due=found.next_change, changes=old.changes
            )
        return []
    version = p.version + 1
    cid = p.customer_id

    def change(kind: str, name: str, action: str, reason: str, prev: str | None = None) -> Change:
        return Change(
            change_id=f"{cid}:{kind}:{name}:{action}:{version}",
            customer_id=cid,
            kind=kind,
            name=name,
            action=action,
            previous=prev,
            version=version,
            at=now,
            reason=reason,
        )

    changes = []
    if st != old.stage:
        changes.append(change("stage", st, "change", why, old.stage or None))
    if tr != old.tier:
        changes.append(change("tier", tr, "change", f"{p.points_earned} points", old.tier or None))
    for name in sorted(set(old.segments) - set(segments)):
        purpose = found.withheld.get(name)
        reason = f"consent for {purpose} not given" if purpose else "no longer matches"
        changes.append(change("segment", name, "exit", reason))
    for name in sorted(set(segments) - set(old.segments)):
        seg = rules.segments.get(name)
        changes.append(change("segment", name, "enter", seg.description if seg else ""))
    p.version = version
    p.audience = Audience(
        stage=st, tier=tr, segments=segments, due=found.next_change, changes=changes
    )
    return changes


def leave(p: Profile, now: int, why: str) -> list[Change]:
    """An absorbed or forgotten customer leaves every segment (the survivor re-enters)."""
    old = p.audience
    if old is None or not old.segments:
        return []
    changes = [
        Change(
            change_id=f"{p.customer_id}:segment:{name}:exit:{p.version}",
            customer_id=p.customer_id,
            kind="segment",
            name=name,
            action="exit",
            version=p.version,
            at=now,
            reason=why,
        )
        for name in sorted(old.segments)
    ]
    p.audience = Audience(stage=old.stage, tier=old.tier, changes=changes)
    return changes
