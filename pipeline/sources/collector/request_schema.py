"""The collector's request rules as JSON Schema: what the OpenAPI document adds to the
msgspec models so the document says what the validators accept (patterns for emails,
phones and blocked identifier values, time ranges, order and product shapes, the
Segment-style call envelope, SendGrid's event items)."""

from __future__ import annotations

import re
from typing import Any

from pipeline.sources.collector.webhooks import UNIX_TIME_MAX, UNIX_TIME_MIN
from pipeline.transforms.identifiers import BLOCKED_VALUES
from pipeline.transforms.sendgrid import ACTIONS
from pipeline.transforms.validate import ECOMMERCE_PRODUCT_EVENTS, MAX_AMOUNT, ORDER_EVENTS

_SEGMENT_CALLS = ("Track", "Page", "Screen", "Identify", "Group")
_CONTACT_EVENTS = ("Email", "PosTransaction", "Consent", "Support")
# Stamped by the collector: whatever a client sends in them is replaced.
_STAMPED = ("receivedAt", "identities", "source")
_TIMES = ("timestamp", "originalTimestamp", "sentAt")
_TIME_RULE = (
    "; after clock-skew correction it must lie within CRM_EVENT_MAX_AGE_DAYS before and "
    "CRM_EVENT_MAX_AHEAD_S after receipt, or the event is rejected"
)
_SEP = r"[\s().\-/]*"
_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_HASHED = r"[0-9a-fA-F]{64}"
_PHONE = (
    rf"{_SEP}(?:\+{_SEP}(?:[0-9]{_SEP}){{6,15}}|0{_SEP}0{_SEP}(?:[0-9]{_SEP}){{6,15}}"
    rf"|(?!0{_SEP}0)(?:[0-9]{_SEP}){{6,15}})"
)
# values clients send for "no value" ("null", "undefined", "n/a"...): ignored, not rejected
_BLOCKED = "|".join(
    "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in v)
    for v in sorted(BLOCKED_VALUES)
    if v
)


def _pattern(*alternatives: str, blank: bool = False) -> str:
    """A whole value (surrounding white space is stripped); ``blank``: or only white space."""
    return r"^\s*(?:" + "|".join(alternatives) + ")" + ("?" if blank else "") + r"\s*$"


_EMAIL_VALUE = _pattern(_EMAIL, _HASHED)
_EMAIL_OR_BLANK = _pattern(_EMAIL, _HASHED, _BLOCKED, blank=True)
_PHONE_VALUE = _pattern(_PHONE, _HASHED)
_TEXT = {"type": "string", "minLength": 1}


def _present(*names: str) -> dict[str, Any]:
    """At least one of ``names`` is a non-empty string."""
    return {"anyOf": [{"required": [n], "properties": {n: _TEXT}} for n in names]}


def _money(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT, "description": description}


_ORDER = {
    "if": {"required": ["event"], "properties": {"event": {"enum": sorted(ORDER_EVENTS)}}},
    "then": {
        "required": ["properties"],
        "properties": {
            "properties": {
                "allOf": [
                    _present("order_id", "orderId"),
                    {"anyOf": [{"required": ["revenue"]}, {"required": ["total"]}]},
                ],
                "properties": {
                    "revenue": _money("order revenue"),
                    "total": _money("order total"),
                    "products": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "price": _money("unit price"),
                                "quantity": {"type": "integer", "minimum": 0, "maximum": 1e6},
                            },
                        },
                    },
                },
            }
        },
    },
}
_PRODUCT = {
    "if": {
        "required": ["event"],
        "properties": {"event": {"enum": sorted(ECOMMERCE_PRODUCT_EVENTS)}},
    },
    "then": {
        "required": ["properties"],
        "properties": {
            "properties": {
                "allOf": [_present("product_id", "productId", "sku")],
                "properties": {
                    "price": _money("unit price"),
                    "quantity": {"type": "integer", "minimum": 0, "maximum": 1e6},
                },
            }
        },
    },
}


def _linked(kind: str, pattern: str) -> dict[str, Any]:
    return {
        "if": {"required": ["linkedType"], "properties": {"linkedType": {"const": kind}}},
        "then": {"properties": {"linkedId": {"pattern": pattern}}},
    }


def refine(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The component ``name`` with the collector's rules; ``type`` stays required (batches)."""
    out = dict(schema)
    props = out["properties"] = dict(schema["properties"])
    rules: list[dict[str, Any]] = []
    for field in _STAMPED:
        props[field] = {**props[field], "readOnly": True, "description": "set by the collector"}
    for field in _TIMES:
        props[field] = {**props[field], "description": "ISO 8601 with a time zone" + _TIME_RULE}
    if name in _SEGMENT_CALLS:
        rules.append(_present("userId", "anonymousId"))
    if name == "Alias":
        out["required"] = [*schema["required"], "userId"]
        props["userId"] = {"type": "string", "minLength": 1, "maxLength": 256}
    if name in _CONTACT_EVENTS:
        rules.append(_present("userId", "anonymousId", "email", "phone", "loyaltyId"))
        email = _EMAIL_OR_BLANK
        phone = _pattern(_PHONE, _HASHED, _BLOCKED, blank=True)
        props["email"] = {
            "anyOf": [{"type": "string", "maxLength": 320, "pattern": email}, {"type": "null"}]
        }
        props["phone"] = {
            "anyOf": [{"type": "string", "maxLength": 64, "pattern": phone}, {"type": "null"}]
        }
    if name == "Track":
        rules += [_ORDER, _PRODUCT]
    if name == "CookieSync":
        rules += [_linked("email", _EMAIL_VALUE), _linked("phone", _PHONE_VALUE)]
    if rules:
        out["allOf"] = rules
    return out


def call_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A single-type route's body: ``type`` may be left out (Segment's HTTP API)."""
    return {**schema, "required": [r for r in schema["required"] if r != "type"]}


_CAMPAIGN = {
    "anyOf": [{"type": "string", "maxLength": 256}, {"type": ["integer", "null"]}],
    "description": "empty: no campaign",
}
SENDGRID_ITEM = {
    "type": "object",
    "required": ["event", "email", "timestamp"],
    "properties": {
        "event": {"enum": sorted(ACTIONS)},
        "email": {"type": "string", "minLength": 1, "pattern": _EMAIL_OR_BLANK},
        "timestamp": {
            "type": "number",
            "minimum": UNIX_TIME_MIN,
            "maximum": UNIX_TIME_MAX,
            "description": "unix seconds" + _TIME_RULE,
        },
        "sg_event_id": {"type": ["string", "null"], "maxLength": 253},
        "sg_message_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 256},
        "campaign_id": _CAMPAIGN,
        "marketing_campaign_id": _CAMPAIGN,
        "type": {"type": ["string", "null"], "description": "bounce type (used as reason)"},
        "url": {"type": ["string", "null"], "maxLength": 2048},
        "reason": {"type": ["string", "null"], "maxLength": 1000},
    },
}
