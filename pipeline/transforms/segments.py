"""Segment definitions (``config/segments.yaml``) and membership evaluation.

A segment is a named condition (see ``conditions.py``) over the rendered profile
plus ``loyalty.stage`` / ``loyalty.tier``. Marketing segments name the consent
purposes they need: a customer who revoked one leaves the segment at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from pipeline.transforms.conditions import (
    Condition,
    Evaluation,
    LineDict,
    fail,
    load_yaml,
    parse_condition,
)

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
CONSENT_STATES = ("granted", "denied")


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    condition: Condition
    consent: tuple[str, ...] = ()  # purposes that must be granted


@dataclass(frozen=True)
class SegmentConfig:
    segments: tuple[Segment, ...] = ()
    consent_default: str = "granted"  # a purpose with no consent event yet
    digest: str = ""

    def get(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)


def consent_given(facts: dict[str, Any], purpose: str, default: str) -> bool:
    state = (facts.get("consent") or {}).get(purpose)
    return state == "granted" if state is not None else default == "granted"


def parse_segments(text: str, source: str = "segments.yaml") -> SegmentConfig:
    doc = load_yaml(text, source)
    unknown = set(doc) - {"segments", "consent_default"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(source, doc, f"unknown key {key!r}; expected segments, consent_default", key)
    default = doc.get("consent_default", "granted")
    if default not in CONSENT_STATES:
        raise fail(source, doc, "consent_default must be granted or denied", "consent_default")
    items = doc.get("segments", [])
    if not isinstance(items, list):
        raise fail(source, doc, "'segments' must be a list", "segments")
    seen: set[str] = set()
    out = []
    for item in items:
        if not isinstance(item, LineDict):
            raise fail(source, doc, "each segment must be a mapping", "segments")
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise fail(source, item, f"segment name {name!r}: lowercase letters, digits, _ or -")
        if name in seen:
            raise fail(source, item, f"segment {name!r} is defined twice", "name")
        seen.add(name)
        extra = set(item) - {"name", "description", "when", "consent"}
        if extra:
            key = sorted(extra)[0]
            raise fail(source, item, f"unknown key {key!r} in segment {name!r}", key)
        if "when" not in item:
            raise fail(source, item, f"segment {name!r} needs a 'when' condition")
        consent = item.get("consent", [])
        consent = [consent] if isinstance(consent, str) else consent
        if not isinstance(consent, list) or not all(isinstance(c, str) for c in consent):
            raise fail(source, item, "'consent' is a purpose or a list of purposes", "consent")
        out.append(
            Segment(
                name=name,
                description=str(item.get("description", "")),
                condition=parse_condition(item["when"], source, item.lines["when"]),
                consent=tuple(consent),
            )
        )
    return SegmentConfig(
        segments=tuple(out),
        consent_default=default,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
    )


@dataclass
class Membership:
    members: set[str]
    next_change: int | None  # event time a time-relative condition flips
    withheld: dict[str, str]  # segment -> the consent purpose that keeps the customer out


def memberships(config: SegmentConfig, facts: dict[str, Any], now: int) -> Membership:
    """Segments the facts satisfy at event time ``now``, and when that may next change."""
    ev = Evaluation(now)
    out = Membership(set(), None, {})
    for seg in config.segments:
        if not seg.condition(facts, ev):
            continue
        missing = [p for p in seg.consent if not consent_given(facts, p, config.consent_default)]
        if missing:
            out.withheld[seg.name] = missing[0]
        else:
            out.members.add(seg.name)
    out.next_change = ev.next_change
    return out
