"""Personalization decisions: what a visitor sees in a slot, and why.

The order, per slot (``config/personalization.yaml``), first answer wins:

1. **consent** - without the personalization purpose granted (or granted by
   default, see ``consent.default``) the slot gets its default content;
2. **user-controlled** - the customer's stated preferences: the first stated
   category that has content in the slot's ``preferences`` map; content in a
   category the customer excluded is never shown by any later step either;
3. **rules-based** - the marketer's ``rules``, in file order, over profile fields
   and request ``context`` (city, country, device, page, hour, weekday);
4. **information-driven** - ``models``: rules over model scores (churn risk,
   lifetime value), and for product slots the recommended items;
5. **default**.

Unknown visitors have no profile; context-only rules still apply to them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pipeline.transforms.conditions import (
    Condition,
    LineDict,
    fail,
    holds,
    load_yaml,
    parse_condition,
)
from pipeline.transforms.segments import CONSENT_STATES, consent_given


@dataclass(frozen=True)
class Rule:
    name: str
    condition: Condition
    content: str
    category: str | None = None


@dataclass(frozen=True)
class Slot:
    name: str
    default: str
    preferences: tuple[tuple[str, str], ...] = ()  # stated category -> content
    rules: tuple[Rule, ...] = ()
    models: tuple[Rule, ...] = ()
    recommendations: int = 0  # > 0: a product slot answering with recommended items
    description: str = ""


@dataclass(frozen=True)
class PersonalizationConfig:
    slots: dict[str, Slot] = field(default_factory=dict)
    consent_purpose: str = "personalization"
    consent_default: str = "granted"
    digest: str = ""


def _rules(node: LineDict, key: str, slot: str, source: str) -> tuple[Rule, ...]:
    items = node.get(key, [])
    if not isinstance(items, list):
        raise fail(source, node, f"slot {slot!r}: '{key}' must be a list", key)
    out = []
    names: set[str] = set()
    for item in items:
        if not isinstance(item, LineDict):
            raise fail(source, node, f"slot {slot!r}: each of '{key}' must be a mapping", key)
        extra = set(item) - {"name", "when", "content", "category"}
        if extra:
            bad = sorted(extra)[0]
            raise fail(source, item, f"unknown key {bad!r} in a {key[:-1]}", bad)
        for required in ("name", "when", "content"):
            if required not in item:
                raise fail(source, item, f"slot {slot!r}: a {key[:-1]} needs '{required}'")
        name = str(item["name"])
        if name in names:
            raise fail(source, item, f"slot {slot!r}: {key[:-1]} {name!r} defined twice", "name")
        names.add(name)
        out.append(
            Rule(
                name=name,
                condition=parse_condition(item["when"], source, item.lines["when"]),
                content=str(item["content"]),
                category=str(item["category"]) if item.get("category") else None,
            )
        )
    return tuple(out)


def parse_personalization(text: str, source: str = "personalization.yaml") -> PersonalizationConfig:
    doc = load_yaml(text, source)
    unknown = set(doc) - {"slots", "consent"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(source, doc, f"unknown key {key!r}; expected slots, consent", key)
    consent = doc.get("consent", LineDict())
    if not isinstance(consent, dict):
        raise fail(source, doc, "'consent' must be a mapping", "consent")
    purpose = str(consent.get("purpose", "personalization"))
    default = consent.get("default", "granted")
    if default not in CONSENT_STATES:
        raise fail(source, consent, "consent default must be granted or denied", "default")
    slots_node = doc.get("slots")
    if not isinstance(slots_node, LineDict) or not slots_node:
        raise fail(source, doc, "'slots' must map slot names to slot definitions", "slots")
    slots = {}
    for name, node in slots_node.items():
        if not isinstance(node, LineDict):
            raise fail(source, slots_node, f"slot {name!r} must be a mapping", name)
        extra = set(node) - {
            "default",
            "preferences",
            "rules",
            "models",
            "recommendations",
            "description",
        }
        if extra:
            bad = sorted(extra)[0]
            raise fail(source, node, f"unknown key {bad!r} in slot {name!r}", bad)
        if "default" not in node:
            raise fail(source, slots_node, f"slot {name!r} needs a 'default' content", name)
        prefs = node.get("preferences", {})
        if not isinstance(prefs, dict):
            raise fail(source, node, f"slot {name!r}: 'preferences' maps category -> content")
        recs = node.get("recommendations", 0)
        if not isinstance(recs, int) or not 0 <= recs <= 50:
            raise fail(source, node, "'recommendations' is a count from 0 to 50", "recommendations")
        slots[str(name)] = Slot(
            name=str(name),
            default=str(node["default"]),
            preferences=tuple((str(k), str(v)) for k, v in prefs.items()),
            rules=_rules(node, "rules", name, source),
            models=_rules(node, "models", name, source),
            recommendations=recs,
            description=str(node.get("description", "")),
        )
    return PersonalizationConfig(
        slots=slots,
        consent_purpose=purpose,
        consent_default=default,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
    )


def _listed(facts: dict[str, Any], key: str) -> list[str]:
    value = (facts.get("preferences") or {}).get(key) or []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def decide(
    config: PersonalizationConfig, slot: Slot, facts: dict[str, Any] | None, now: int
) -> dict[str, Any]:
    """The answer for one slot; ``facts`` is the rendered profile plus ``context``.

    ``facts`` without ``customer_id`` is an unknown visitor.
    """
    answer: dict[str, Any] = {"slot": slot.name, "content": slot.default, "source": "default"}
    facts = facts or {}
    known = "customer_id" in facts
    if not consent_given(facts, config.consent_purpose, config.consent_default):
        state = (facts.get("consent") or {}).get(config.consent_purpose, "not given")
        return answer | {
            "source": "consent",
            "reason": f"{config.consent_purpose} consent {state}: default content only",
        }
    excluded = set(_listed(facts, "excluded_categories"))
    for category in _listed(facts, "categories"):
        content = dict(slot.preferences).get(category)
        if content is not None and category not in excluded:
            return answer | {
                "content": content,
                "source": "preference",
                "reason": f"the customer chose {category!r} in the preference centre",
            }
    for source, rules in (("rule", slot.rules), ("model", slot.models)):
        for rule in rules:
            if rule.category in excluded:
                continue
            if holds(rule.condition, facts, now):
                return answer | {
                    "content": rule.content,
                    "source": source,
                    "rule": rule.name,
                    "reason": f"{'marketer rule' if source == 'rule' else 'model rule'} "
                    f"{rule.name!r} matched",
                }
    if slot.recommendations:
        scores = facts.get("scores") or {}
        items = [str(i) for i in scores.get("recommendations") or []][: slot.recommendations]
        if items:
            return answer | {
                "content": slot.default,
                "items": items,
                "categories": (scores.get("top_categories") or [])[:5],
                "source": "model",
                "reason": "item-to-item recommendations for this customer",
            }
    return answer | {"reason": "no rule matched" if known else "unknown visitor"}
