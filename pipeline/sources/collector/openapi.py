"""The collector's OpenAPI 3.1 document, built from the same msgspec models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec

from pipeline import __version__
from pipeline.events import EVENT_TYPES
from pipeline.sources.collector.request_schema import SENDGRID_ITEM, call_schema, refine

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
        components[name] = refine(name, components[name])
    calls = {}
    for name in names:
        components[f"{name}Call"] = call_schema(components[name])
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
            {"type": "array", "items": SENDGRID_ITEM},
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
