"""Personalization decisions: documented order, consent, preferences, rules reload."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.api.personalization import (
    BadRequest,
    Preferences,
    device_from_user_agent,
    parse_preferences,
    preference_event,
)
from pipeline.config import Settings
from pipeline.rule_files import load_personalization
from pipeline.rules_file import ReloadingFile
from pipeline.transforms.conditions import ConfigError
from pipeline.transforms.personalize import decide, parse_personalization
from pipeline.transforms.profile import Profile

RULES = """
consent: {purpose: personalization, default: granted}
slots:
  hero:
    default: generic
    preferences: {shoes: hero-shoes, beauty: hero-beauty}
    rules:
      - name: gold-vilnius
        when:
          all:
            - {field: loyalty.tier, eq: gold}
            - {field: context.city, eq: Vilnius}
        content: gold-vilnius
        category: jewellery
      - name: mobile
        when: {field: context.device, eq: mobile}
        content: get-the-app
    models:
      - name: retention
        when: {field: scores.churn_risk, gte: 0.6}
        content: we-miss-you
  recs:
    default: bestsellers
    recommendations: 2
"""
CONFIG = parse_personalization(RULES)


def facts(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "customer_id": "c1",
        "consent": {},
        "loyalty": {"tier": "gold", "stage": "client"},
        "scores": {"churn_risk": 0.8, "recommendations": ["a", "b", "c"]},
        "preferences": {},
        "context": {"city": "Vilnius", "device": "desktop"},
    }
    return base | over


def hero(f: dict[str, Any] | None) -> dict[str, Any]:
    return decide(CONFIG, CONFIG.slots["hero"], f, 0)


def test_rules_win_over_models_and_models_over_default():
    assert hero(facts())["content"] == "gold-vilnius"
    assert hero(facts())["source"] == "rule"
    out = hero(facts(context={"city": "Riga", "device": "desktop"}))
    assert (out["content"], out["source"], out["rule"]) == ("we-miss-you", "model", "retention")
    calm = facts(context={"city": "Riga"}, scores={"churn_risk": 0.1})
    assert hero(calm)["content"] == "generic" and hero(calm)["reason"] == "no rule matched"


def test_stated_preferences_always_win():
    out = hero(facts(preferences={"categories": ["beauty", "shoes"]}))
    assert (out["content"], out["source"]) == ("hero-beauty", "preference")
    assert "preference centre" in out["reason"]


def test_excluded_categories_are_never_shown():
    out = hero(facts(preferences={"excluded_categories": ["jewellery"]}))
    assert out["content"] == "we-miss-you"  # the gold-vilnius rule shows jewellery


def test_without_consent_only_default_content():
    revoked = facts(consent={"personalization": "revoked"}, preferences={"categories": ["shoes"]})
    out = hero(revoked)
    assert (out["content"], out["source"]) == ("generic", "consent")
    assert "personalization consent revoked" in out["reason"]
    recs = decide(CONFIG, CONFIG.slots["recs"], revoked, 0)
    assert "items" not in recs and recs["content"] == "bestsellers"
    strict = parse_personalization(RULES.replace("default: granted", "default: denied"))
    out = decide(strict, strict.slots["hero"], facts(), 0)
    assert out["source"] == "consent" and "not given" in out["reason"]


def test_unknown_visitor_gets_defaults_and_context_rules():
    assert hero({"context": {"device": "desktop"}})["reason"] == "unknown visitor"
    assert hero({"context": {"device": "mobile"}})["content"] == "get-the-app"


def test_product_slot_answers_with_recommendations():
    out = decide(CONFIG, CONFIG.slots["recs"], facts(), 0)
    assert out["items"] == ["a", "b"] and out["source"] == "model"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("slots:\n  hero:\n    rules: []\n", 2, "needs a 'default'"),
        (
            "slots:\n  hero:\n    default: x\n    rules:\n      - name: r\n        content: y\n",
            5,
            "needs 'when'",
        ),
        ("slots:\n  hero:\n    default: x\n    colour: red\n", 4, "unknown key 'colour'"),
        (
            "slots:\n  hero:\n    default: x\n    rules:\n      - name: r\n        content: y\n"
            "        when: {field: a, between: 3}\n",
            7,
            "unknown operator",
        ),
        ("consent: {default: maybe}\nslots: {a: {default: x}}\n", 1, "granted or denied"),
        ("slots:\n  hero: {default: x\n", 3, ""),
    ],
)
def test_invalid_rules_name_the_line(text: str, line: int, words: str):
    with pytest.raises(ConfigError) as err:
        parse_personalization(text, "p.yaml")
    assert f"p.yaml: line {line}:" in str(err.value) and words in str(err.value)


def test_invalid_edit_keeps_the_old_rules_serving(tmp_path: Path):
    path = tmp_path / "personalization.yaml"
    path.write_text(RULES)
    now = [0.0]
    holder = ReloadingFile(path, load_personalization, interval=1.0, clock=lambda: now[0])
    good = holder.current()
    path.write_text(RULES.replace("eq: mobile", "equals: mobile"))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse file systems
    now[0] = 5.0
    assert holder.current() is good
    assert holder.error is not None and "line 16" in holder.error
    assert holder.status()["error"] == holder.error
    path.write_text(RULES.replace("get-the-app", "install-app"))
    now[0] = 10.0
    assert holder.current().slots["hero"].rules[1].content == "install-app"
    assert holder.error is None


def test_shipped_personalization_file_is_valid():
    config = load_personalization(Settings().personalization_rules)
    assert {"home_hero", "product_recs"} <= set(config.slots)


def test_preferences_body_is_validated_precisely():
    assert parse_preferences(b'{"categories": ["shoes"]}').categories == ["shoes"]
    with pytest.raises(BadRequest, match="no preferences given"):
        parse_preferences(b"{}")
    with pytest.raises(BadRequest, match="unknown field `colour`"):
        parse_preferences(b'{"colour": "red"}')
    with pytest.raises(BadRequest, match="language"):
        parse_preferences(b'{"language": "English"}')
    with pytest.raises(BadRequest, match="not JSON"):
        parse_preferences(b"{categories")


def test_preference_event_uses_the_strongest_identifier():
    p = Profile(customer_id="c1", identifiers={"anonymous_id": ["a1"], "user_id": ["u1"]})
    record = preference_event(p, Preferences(categories=["shoes"]), _now())
    assert record.key == b"user_id:u1"
    assert b'"event":"Preferences Updated"' in record.value and b'"user_id":"u1"' in record.value
    with pytest.raises(BadRequest):
        preference_event(Profile(customer_id="c2"), Preferences(categories=["x"]), _now())


def test_device_from_user_agent():
    iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"
    assert device_from_user_agent(iphone) == "mobile"
    assert device_from_user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/120") == "desktop"
    assert device_from_user_agent("") == "unknown"


def _now():
    from datetime import UTC, datetime

    return datetime(2026, 11, 23, tzinfo=UTC)


def test_lazy_view_equals_the_full_render():
    from pipeline.transforms.profile_view import LazyView, render

    p = Profile(customer_id="c1", identifiers={"user_id": ["u1"]}, orders=2, revenue_cents=500)
    lazy = LazyView(p, 0)
    assert "purchases" in lazy and "nonsense" not in lazy
    assert lazy.get("purchases") == render(p, 0)["purchases"]
    assert {k: lazy[k] for k in render(p, 0)} == render(p, 0)
    out = decide(CONFIG, CONFIG.slots["hero"], lazy | {}, 0)  # a plain copy still decides
    assert out["slot"] == "hero"
