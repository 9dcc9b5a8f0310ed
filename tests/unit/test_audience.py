"""Conditions, segments, the loyalty ladder and the audience transitions they produce."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from pipeline.config import Settings
from pipeline.events import Consent, Identify, LineItem, PosTransaction, Support, Track
from pipeline.rule_files import load_audience, load_loyalty
from pipeline.testing import ListSink, Outbox
from pipeline.transforms.audience import AudienceRules, apply, leave
from pipeline.transforms.conditions import ConfigError, holds, load_yaml, parse_condition
from pipeline.transforms.fold import FoldRules, fold
from pipeline.transforms.loyalty import LoyaltyConfig, stage, tier
from pipeline.transforms.profile import Profile, decode
from pipeline.transforms.profile_view import render
from pipeline.transforms.segments import parse_segments
from pipeline.wire.change import Change
from pipeline.wire.records import Forget, RoutedEvent, Tick, encoder
from pipeline.worker.stages import ProfileStage

DAY = 86_400_000
T0 = datetime(2026, 1, 10, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def cond(text: str):
    return parse_condition(load_yaml(text), "t.yaml")


def pos(eid: str, total: float, at: datetime = T0, category: str = "shoes") -> PosTransaction:
    return PosTransaction(
        message_id=eid,
        loyalty_id="L1",
        transaction_id=eid,
        store_id="vilnius-01",
        timestamp=at,
        items=[LineItem(sku="s1", category=category, price=total)],
        total=total,
        identities={"loyalty_id": "L1"},
    )


def consent(eid: str, status: str, purpose: str = "email_marketing") -> Consent:
    return Consent(
        message_id=eid,
        loyalty_id="L1",
        purpose=purpose,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        timestamp=T0,
        identities={"loyalty_id": "L1"},
    )


def profile_of(*events, rules: FoldRules | None = None) -> Profile:
    p = Profile(customer_id="c1")
    for e in events:
        p = fold(p, e, rules or FoldRules())
    return p


# --- conditions ------------------------------------------------------------------


def test_condition_operators_and_paths():
    facts = {"a": {"b": 3, "tags": ["x"]}, "s": "gold"}
    assert holds(cond("{field: a.b, gte: 3}"), facts, 0)
    assert not holds(cond("{field: a.b, gt: 3}"), facts, 0)
    assert holds(cond("{field: a.tags, contains: x}"), facts, 0)
    assert holds(cond("{field: s, in: [gold, platinum]}"), facts, 0)
    assert holds(cond("{field: a.missing, exists: false}"), facts, 0)
    assert not holds(cond("{field: a.missing, gte: 1}"), facts, 0)  # missing never compares
    assert holds(cond("{not: {field: s, eq: silver}}"), facts, 0)
    assert holds(cond("any: [{field: s, eq: silver}, {field: a.b, lt: 4}]"), facts, 0)
    assert not holds(cond("all: [{field: s, eq: gold}, {field: a.b, lt: 3}]"), facts, 0)


def test_time_relative_conditions_report_when_they_flip():
    c = cond("{field: last, older_than: 60d}")
    from pipeline.transforms.conditions import Evaluation

    ev = Evaluation(now=T0_MS + 10 * DAY)
    assert not c({"last": T0.isoformat()}, ev)
    assert ev.next_change == T0_MS + 60 * DAY
    assert holds(c, {"last": T0.isoformat()}, T0_MS + 60 * DAY)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("segments:\n  - name: a\n    when: {field: x, greater: 3}\n", 3, "unknown operator"),
        (
            "segments:\n  - name: a\n    when:\n      field: x\n      older_than: soon\n",
            5,
            "duration",
        ),
        ("segments:\n  - name: a\n  - name: a\n    when: {field: x, eq: 1}\n", 2, "needs a 'when'"),
        ("segments:\n  - name: Bad Name\n    when: {field: x, eq: 1}\n", 2, "lowercase"),
        ("segments:\n  - name: a\n    when: {field: x, eq: [1\n", 4, ""),
        ("segments:\n  - name: a\n    when: {field: x, eq: 1, ne: 2}\n", 3, "exactly one"),
    ],
)
def test_invalid_segment_files_name_the_line(text: str, line: int, words: str):
    with pytest.raises(ConfigError) as err:
        parse_segments(text, "segments.yaml")
    assert f"segments.yaml: line {line}:" in str(err.value)
    assert words in str(err.value)


def test_shipped_config_files_are_valid():
    s = Settings()
    rules = load_audience(s.loyalty_rules, s.segments_rules)
    assert {seg.name for seg in rules.segments.segments} >= {"lapsed-60d", "high-value"}
    assert rules.loyalty.tiers[0] == ("member", 0)


# --- loyalty ---------------------------------------------------------------------


def test_points_accrue_by_channel_and_category_rules(tmp_path: Path):
    f = tmp_path / "loyalty.yaml"
    f.write_text(
        "points:\n  per_currency_unit: 2\n  channels: {store: 1.5}\n  categories: {beauty: 3}\n"
    )
    cfg = load_loyalty(f)
    p = profile_of(
        pos("o1", 10.0, category="shoes"), pos("o2", 10.0, category="beauty"), rules=cfg.rules
    )
    # shoes: 10 * 2 * 1.5 = 30; beauty: (10 + 10 * 2) * 2 * 1.5 = 90
    assert p.points_earned == 120


def test_invalid_loyalty_file_names_the_line(tmp_path: Path):
    f = tmp_path / "loyalty.yaml"
    f.write_text("points:\n  per_currency_unit: -1\n")
    with pytest.raises(ConfigError, match="line 2: 'per_currency_unit'"):
        load_loyalty(f)


def test_ladder_stages_follow_documented_criteria():
    cfg = LoyaltyConfig()
    assert stage(Profile(customer_id="c"), cfg)[0] == "prospect"
    one = profile_of(pos("o1", 20))
    assert stage(one, cfg)[0] == "customer"
    two = fold(one, pos("o2", 20))
    assert stage(two, cfg)[0] == "client"  # no engagement yet
    engaged = two
    for i in range(3):
        engaged = fold(
            engaged,
            Track(
                message_id=f"v{i}",
                event="Product Viewed",
                anonymous_id="a",
                timestamp=datetime(2026, 1, 11 + i, tzinfo=UTC),
                identities={"anonymous_id": "a"},
            ),
        )
    assert stage(engaged, cfg)[0] == "supporter"
    complaint = Support(
        message_id="c1",
        loyalty_id="L1",
        kind="complaint",
        topic="refund",
        status="open",
        case_id="k1",
        timestamp=T0,
        identities={"loyalty_id": "L1"},
    )
    assert stage(fold(engaged, complaint), cfg)[0] == "client"  # an open complaint holds it back
    review = Track(
        message_id="r1",
        event="Review Submitted",
        anonymous_id="a",
        timestamp=T0,
        identities={"anonymous_id": "a"},
    )
    assert stage(fold(one, review), cfg)[0] == "advocate"
    partner = Identify(
        message_id="i1",
        user_id="u",
        traits={"partner": True},
        timestamp=T0,
        identities={"user_id": "u"},
    )
    assert stage(fold(one, partner), cfg)[0] == "partner"
    assert tier(profile_of(pos("big", 2500)), cfg) == "gold"


# --- transitions -----------------------------------------------------------------

SEGMENTS = """
segments:
  - name: lapsed
    consent: email_marketing
    when: {field: purchases.last_purchase, older_than: 60d}
  - name: buyers
    when: {field: purchases.orders, gte: 1}
"""


def rules() -> AudienceRules:
    return AudienceRules(LoyaltyConfig(), parse_segments(SEGMENTS))


def test_apply_emits_entries_exits_and_stage_changes_once():
    p = profile_of(pos("o1", 20))
    changes = apply(p, rules(), T0_MS)
    kinds = {(c.kind, c.name, c.action) for c in changes}
    assert kinds == {
        ("stage", "customer", "change"),
        ("tier", "member", "change"),
        ("segment", "buyers", "enter"),
    }
    assert apply(p, rules(), T0_MS + DAY) == []  # nothing new
    assert p.audience is not None and p.audience.due == T0_MS + 60 * DAY
    lapsed = apply(p, rules(), T0_MS + 61 * DAY)
    assert [(c.name, c.action) for c in lapsed] == [("lapsed", "enter")]
    assert len({c.change_id for c in changes + lapsed}) == len(changes) + len(lapsed)


def test_revoking_consent_leaves_marketing_segments():
    p = profile_of(pos("o1", 20))
    apply(p, rules(), T0_MS + 61 * DAY)
    assert set(p.audience.segments) == {"lapsed", "buyers"}
    p = fold(p, consent("k1", "revoked"))
    out = apply(p, rules(), T0_MS + 61 * DAY)
    assert [(c.name, c.action, c.reason) for c in out] == [
        ("lapsed", "exit", "consent for email_marketing not given")
    ]
    assert render(p, T0_MS)["segments"] == ["buyers"]


def test_leave_exits_every_segment():
    p = profile_of(pos("o1", 20))
    apply(p, rules(), T0_MS)
    out = leave(p, T0_MS, "forgotten")
    assert [(c.name, c.action) for c in out] == [("buyers", "exit")]
    assert p.audience.segments == {}


# --- in the profile stage --------------------------------------------------------

_change = msgspec.json.Decoder(Change)


def routed(event) -> bytes:
    return encoder.encode(RoutedEvent(customer_id="c1", event=event))


def make_stage():
    table: dict[bytes, bytes] = {}
    sink: ListSink[Profile] = ListSink()
    outbox = Outbox()
    stage_ = ProfileStage(table, sink, outbox, by_customer="bc", audience=rules(), changes="ch")
    return table, sink, outbox, stage_


def changes_in(outbox: Outbox) -> list[Change]:
    return [_change.decode(v) for t, _k, v in outbox.take() if t == "ch" and v]


def test_stage_emits_changes_ticks_fire_timers_and_replays_resend():
    table, sink, outbox, st = make_stage()
    asyncio.run(st.process([routed(pos("o1", 20))]))
    first = changes_in(outbox)
    assert {(c.kind, c.name) for c in first} >= {("segment", "buyers"), ("stage", "customer")}
    p = decode(table[b"c1"])
    assert p.audience.due == T0_MS + 60 * DAY and sink.written[-1].audience.segments.keys() == {
        "buyers"
    }
    # the timer fires at event time 61 days later: the customer lapses without any event
    asyncio.run(st.process([encoder.encode(Tick(customer_id="c1", at=T0_MS + 61 * DAY))]))
    assert [(c.name, c.action) for c in changes_in(outbox)] == [("lapsed", "enter")]
    assert decode(table[b"c1"]).version == p.version + 1
    # a replayed event (crash before commit) re-sends the last transitions, same ids
    asyncio.run(st.process([routed(pos("o1", 20))]))
    again = changes_in(outbox)
    assert [c.change_id for c in again] == [
        c.change_id for c in decode(table[b"c1"]).audience.changes
    ]
    # forgetting the customer exits every segment
    asyncio.run(st.process([encoder.encode(Forget(customer_id="c1", requested_at="now"))]))
    assert {(c.name, c.action) for c in changes_in(outbox)} == {
        ("lapsed", "exit"),
        ("buyers", "exit"),
    }
