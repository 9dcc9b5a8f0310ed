"""The collector's OpenAPI 3.1 document, built from the same msgspec models."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import msgspec

from pipeline import __version__
from pipeline.events import EVENT_TYPES
from pipeline.sources.collector.webhooks import UNIX_TIME_MAX, UNIX_TIME_MIN
from pipeline.transforms.identifiers import BLOCKED_VALUES
from pipeline.transforms.sendgrid import ACTIONS
from pipeline.transforms.validate import ECOMMERCE_PRODUCT_EVENTS, MAX_AMOUNT, ORDER_EVENTS

_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["success", "accepted", "rejected"],
    "properties": {
        "success": {"const": True},
        "accepted": {"type": "integer"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "type": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
        "warnings": {
            "type": "array",
            "description": "fields dropped from accepted events (an invalid traits.email)",
            "items": {
                "type": "object",
                "properties": {"index": {"type": "integer"}, "message": {"type": "string"}},
            },
        },
    },
}

_ERROR = {
    "type": "object",
    "description": "Segment's and RudderStack's SDKs read `code` and `message`",
    "required": ["success", "code", "message", "error"],
    "properties": {
        "success": {"const": False},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "accepted": {"type": "integer"},
        "rejected": _RESULT["properties"]["rejected"],
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}


def _json(description: str, ref: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


_RESPONSES = {
    "200": _json("Stored in Kafka (acks=all); invalid items listed in `rejected`", "Result"),
    "400": _json(
        "Malformed body, invalid event, or every event of the request invalid "
        "(dead-lettered with the reason)",
        "Error",
    ),
    "401": _json("Missing or wrong write key", "Error"),
    "408": _json("The body did not arrive within CRM_BODY_TIMEOUT_S", "Error"),
    "413": _json("Body, decompressed body or single event too large", "Error"),
    "429": _json(
        "More requests with this write key than CRM_RATE_LIMIT_PER_KEY allows: nothing stored",
        "Error",
        {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    ),
    "503": _json(
        "Kafka unavailable: nothing was stored, retry",
        "Error",
        {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}},
    ),
}
# --- what a request body must be, beyond the types of pipeline.events ---------------
# The components come from the msgspec contract; the collector also applies rules a type
# cannot express (pipeline/transforms/validate.py, enrich.py). They are written into the
# request schemas here, so the document promises exactly what the collector accepts.

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


def _refine(name: str, schema: dict[str, Any]) -> dict[str, Any]:
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


def _call(schema: dict[str, Any]) -> dict[str, Any]:
    """A single-type route's body: ``type`` may be left out (Segment's HTTP API)."""
    return {**schema, "required": [r for r in schema["required"] if r != "type"]}


_CAMPAIGN = {
    "anyOf": [{"type": "string", "maxLength": 256}, {"type": ["integer", "null"]}],
    "description": "empty: no campaign",
}
_SENDGRID_ITEM = {
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


def _op(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"writeKey": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": _RESPONSES,
        }
    }


def _body(paths: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = paths[path]["post"]["requestBody"]["content"]["application/json"]
    return dict(schema["schema"])


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    (refs, components) = msgspec.json.schema_components(
        EVENT_TYPES, ref_template="#/components/schemas/{name}"
    )
    names = [cls.__name__ for cls in EVENT_TYPES]
    for name in names:
        components[name] = _refine(name, components[name])
    calls = {}
    for name in names:
        components[f"{name}Call"] = _call(components[name])
        calls[name] = {"$ref": f"#/components/schemas/{name}Call"}
    components["Result"] = _RESULT
    components["Error"] = _ERROR
    components["ReadError"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
        "description": "errors of the routes SDKs read (settings, source config, snippet)",
    }
    any_event = {"oneOf": list(refs)}
    batch = {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "items": any_event, "minItems": 1},
            "sentAt": {
                "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
                "description": "when the client sent the batch: corrects its events' clock skew",
            },
            "writeKey": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "for browsers that cannot send auth",
            },
            "context": {"type": "object", "description": "merged under each event's context"},
            "integrations": {"type": "object", "description": "merged under each event's"},
        },
    }
    paths = {
        "/v1/track": _op("Record a user action (Segment track)", calls["Track"]),
        "/v1/page": _op("Record a page view (Segment page)", calls["Page"]),
        "/v1/screen": _op("Record a screen view (Segment screen)", calls["Screen"]),
        "/v1/identify": _op("Attach traits to a user (Segment identify)", calls["Identify"]),
        "/v1/alias": _op("Link a previous id to a user id (Segment alias)", calls["Alias"]),
        "/v1/group": _op(
            "Membership of an account, with its traits (Segment group)", calls["Group"]
        ),
        "/v1/batch": _op("Up to max_batch_bytes of events of any type (Segment batch)", batch),
        "/v1/import": _op("Same as /v1/batch (Segment's historical import route)", batch),
        "/v1/cookie-sync": _op("Link a first-party cookie to another id", calls["CookieSync"]),
        "/v1/consent": _op("Grant or revoke consent for a purpose", calls["Consent"]),
        "/v1/support": _op("A complaint, question or compliment", calls["Support"]),
        "/v1/pos/transactions": _op(
            "Store receipts (one object or an array)",
            {
                "oneOf": [
                    calls["PosTransaction"],
                    {"type": "array", "items": calls["PosTransaction"]},
                ]
            },
        ),
        "/v1/webhooks/sendgrid": _op(
            "SendGrid Event Webhook (array of events)",
            {"type": "array", "items": _SENDGRID_ITEM},
        ),
    }
    # analytics.js (analytics-next) and RudderStack's browser SDK: same bodies, other routes;
    # the write key may come in the body (text/plain, no preflight) or ?writeKey=.
    for short, long, name in (
        ("/v1/t", "/v1/track", "track"),
        ("/v1/p", "/v1/page", "page"),
        ("/v1/s", "/v1/screen", "screen"),
        ("/v1/i", "/v1/identify", "identify"),
        ("/v1/a", "/v1/alias", "alias"),
        ("/v1/g", "/v1/group", "group"),
    ):
        paths[short] = _op(
            f"analytics.js route for {name} (same body as {long})", _body(paths, long)
        )
    paths["/v1/b"] = _op("analytics.js batch route (same body as /v1/batch)", batch)
    paths["/beacon/v1/batch"] = _op(
        "RudderStack beacon batch (navigator.sendBeacon; ?writeKey= in the query)", batch
    )
    paths["/v1/projects/{writeKey}/settings"] = {
        "get": {
            "summary": "analytics.js settings document (point cdnURL at the collector)",
            "parameters": [
                {"name": "writeKey", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "Segment.io integration settings for this host"},
                "404": _json("unknown write key", "ReadError"),
            },
        }
    }
    paths["/v1/crm.js"] = {
        "get": {
            "summary": "The tracking snippet: analytics.js configured for this collector",
            "parameters": [
                {
                    "name": "writeKey",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "read by the script from its own URL, not by the server",
                },
                {
                    "name": "page",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "`false`: no page view on load (read by the script)",
                },
            ],
            "responses": {
                "200": {"description": "JavaScript (ETag, 5-minute cache)"},
                "304": {"description": "not modified"},
                "503": _json("the bundle is not built (make setup)", "ReadError"),
            },
        }
    }
    paths["/sourceConfig/"] = {
        "get": {
            "summary": "RudderStack JS SDK source configuration (point configUrl here)",
            "parameters": [
                {"name": "writeKey", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "an enabled source without destinations"},
                "401": _json("missing write key", "ReadError"),
                "404": _json("unknown write key", "ReadError"),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "CRM pipeline collector", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "write key as user name, empty password",
                }
            },
        },
    }
