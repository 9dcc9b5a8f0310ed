"""The collector's OpenAPI 3.1 document, built from the same msgspec models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec

from pipeline import __version__
from pipeline.events import EVENT_TYPES

_RESULT = {
    "type": "object",
    "properties": {
        "success": {"type": "boolean"},
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
        "code": {"type": "string", "description": "error type (what Segment's SDKs read)"},
        "message": {"type": "string", "description": "error message"},
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}

_RESPONSES = {
    "200": {
        "description": "Stored in Kafka (acks=all); invalid items listed in `rejected`",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}},
    },
    "400": {
        "description": "Malformed body or invalid event (dead-lettered with the reason)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}},
    },
    "401": {"description": "Missing or wrong write key"},
    "413": {"description": "Event or body too large"},
    "503": {"description": "Kafka unavailable: nothing was stored, retry"},
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
    by_name = {cls.__name__: ref for cls, ref in zip(EVENT_TYPES, refs, strict=True)}
    components["Result"] = _RESULT
    any_event = {"oneOf": list(refs)}
    batch = {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "items": any_event},
            "sentAt": {"type": "string", "format": "date-time"},
            "writeKey": {"type": "string", "description": "for browsers that cannot send auth"},
            "context": {"type": "object", "description": "merged under each event's context"},
            "integrations": {"type": "object", "description": "merged under each event's"},
        },
    }
    paths = {
        "/v1/track": _op("Record a user action (Segment track)", by_name["Track"]),
        "/v1/page": _op("Record a page view (Segment page)", by_name["Page"]),
        "/v1/screen": _op("Record a screen view (Segment screen)", by_name["Screen"]),
        "/v1/identify": _op("Attach traits to a user (Segment identify)", by_name["Identify"]),
        "/v1/alias": _op("Link a previous id to a user id (Segment alias)", by_name["Alias"]),
        "/v1/group": _op(
            "Membership of an account, with its traits (Segment group)", by_name["Group"]
        ),
        "/v1/batch": _op("Up to max_batch_bytes of events of any type (Segment batch)", batch),
        "/v1/import": _op("Same as /v1/batch (Segment's historical import route)", batch),
        "/v1/cookie-sync": _op("Link a first-party cookie to another id", by_name["CookieSync"]),
        "/v1/consent": _op("Grant or revoke consent for a purpose", by_name["Consent"]),
        "/v1/support": _op("A complaint, question or compliment", by_name["Support"]),
        "/v1/pos/transactions": _op(
            "Store receipts (one object or an array)",
            {
                "oneOf": [
                    by_name["PosTransaction"],
                    {"type": "array", "items": by_name["PosTransaction"]},
                ]
            },
        ),
        "/v1/webhooks/sendgrid": _op(
            "SendGrid Event Webhook (array of events)",
            {"type": "array", "items": {"type": "object"}},
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
                "404": {"description": "unknown write key"},
            },
        }
    }
    paths["/v1/crm.js"] = {
        "get": {
            "summary": "The tracking snippet: analytics.js configured for this collector",
            "parameters": [
                {"name": "writeKey", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "page", "in": "query", "schema": {"type": "string", "enum": ["false"]}},
            ],
            "responses": {
                "200": {"description": "JavaScript (ETag, 5-minute cache)"},
                "304": {"description": "not modified"},
                "503": {"description": "the bundle is not built (make setup)"},
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
                "401": {"description": "missing write key"},
                "404": {"description": "unknown write key"},
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
