"""The OpenAPI 3.1 document of the profile and personalization API (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from pipeline.transforms.identifiers import PRIORITY

IDENTIFIER_TYPES = (*PRIORITY, "partner")

# A customer id as the worker mints them (any string is looked up).
_CUSTOMER_EXAMPLE = "c_0123456789abcdef0123456789abcdef"
_CUSTOMER_ID = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": _CUSTOMER_EXAMPLE,
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_PROFILE_RESPONSES = {
    "200": {"description": "The profile with derived fields (RFM, loyalty balance, email totals)"},
    "400": _error("Unknown identifier type or a value that cannot be normalised"),
    "401": _error("Missing or invalid read key"),
    "404": _error("Unknown customer"),
    "503": _error("Profile store unavailable (Retry-After)"),
}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "CRM pipeline profile API", "version": "0.1.0"},
    "components": {
        "schemas": {"Error": _ERROR},
        "securitySchemes": {"readKey": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"readKey": []}],
    "paths": {
        "/v1/profiles/{customer_id}": {
            "get": {
                "summary": "Profile by customer id (absorbed ids resolve to the survivor)",
                "parameters": [_CUSTOMER_ID],
                "responses": _PROFILE_RESPONSES,
            }
        },
        "/v1/profiles/by/{identifier_type}/{value}": {
            "get": {
                "summary": "Profile by any identifier (emails, phones hashed as collected)",
                "parameters": [
                    {
                        "name": "identifier_type",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": list(IDENTIFIER_TYPES)},
                    },
                    {
                        "name": "value",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "for partner ids: <partner>:<id>",
                    },
                ],
                "responses": _PROFILE_RESPONSES,
            }
        },
    },
}

_ID_PARAMS = [
    {
        "name": "identifier_type",
        "in": "path",
        "required": True,
        "schema": {"enum": list(IDENTIFIER_TYPES)},
    },
    {"name": "value", "in": "path", "required": True, "schema": {"type": "string"}},
]
_CONTEXT_PARAMS = [
    {
        "name": "slot",
        "in": "query",
        "schema": {"type": "array", "items": {"type": "string"}},
        "description": "slots to decide (repeat); all slots without it",
    },
    *[
        {"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
        for n, d in [
            ("city", "visitor's city"),
            ("country", "visitor's country"),
            ("page", "page being rendered"),
            ("device", "mobile, tablet or desktop (default: from the User-Agent)"),
            ("tz", "IANA time zone for context.hour / context.weekday"),
        ]
    ],
]
_CATEGORY = {"type": "string", "minLength": 1, "maxLength": 64}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_PREFERENCE_FIELDS = {
    "categories": _nullable({"type": "array", "items": _CATEGORY, "maxItems": 20}),
    "excluded_categories": _nullable({"type": "array", "items": _CATEGORY, "maxItems": 50}),
    "channels": _nullable({"type": "object", "additionalProperties": {"type": "boolean"}}),
    "language": _nullable({"type": "string", "pattern": "^[a-z]{2}(-[A-Z]{2})?$"}),
}
_PREFERENCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": _PREFERENCE_FIELDS,
    "description": "at least one field that is not null",
    "anyOf": [
        {"required": [k], "properties": {k: {"not": {"type": "null"}}}} for k in _PREFERENCE_FIELDS
    ],
}
_DECIDE_RESPONSES = {
    "200": {
        "description": "Per slot: content, source (consent, preference, rule, model) and reason"
    },
    "400": _error("Unknown slot, time zone or identifier type"),
    "401": _error("Missing or invalid read key"),
    "404": _error("No such route: a path value URL paths cannot carry (control characters)"),
    "503": _error("Profile store unavailable (Retry-After)"),
}
OPENAPI["paths"].update(
    {
        "/v1/personalize/{customer_id}": {
            "get": {
                "summary": "What this customer should see in each slot, and why",
                "parameters": [_CUSTOMER_ID, *_CONTEXT_PARAMS],
                "responses": _DECIDE_RESPONSES,
            }
        },
        "/v1/personalize/by/{identifier_type}/{value}": {
            "get": {
                "summary": "The same by any identifier; unknown visitors get defaults",
                "parameters": [*_ID_PARAMS, *_CONTEXT_PARAMS],
                "responses": _DECIDE_RESPONSES,
            }
        },
        "/v1/personalize/rules": {
            "get": {
                "summary": "The personalization rules serving now and the last reload error",
                "responses": {
                    "200": {"description": "file, digest, loaded_at, error, slots"},
                    "401": _error("Missing or invalid read key"),
                },
            }
        },
        "/v1/profiles/{customer_id}/preferences": {
            "put": {
                "summary": "Preference centre: stated preferences, emitted as an event",
                "description": "A server-side read key, or the (public) write key with an"
                " X-Customer-Token the site issued for this customer: HMAC-SHA256 of"
                " '<customer id>:<expires>' with CRM_CUSTOMER_TOKEN_SECRET, sent as"
                " '<expires>.<hex signature>'",
                "security": [{"readKey": []}, {"writeKey": [], "customerToken": []}],
                "parameters": [_CUSTOMER_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Preferences"}}
                    },
                },
                "responses": {
                    "202": {"description": "Accepted: the event is in Kafka"},
                    "400": _error("Invalid body; the message names the field"),
                    "401": _error("Missing or invalid key"),
                    "403": _error("Write key without a valid customer token for this customer"),
                    "404": _error("Unknown customer"),
                    "408": _error("The body did not arrive within CRM_BODY_TIMEOUT_S"),
                    "413": _error("Body larger than CRM_API_MAX_BODY_BYTES"),
                    "503": _error("Kafka or the profile store unavailable; retry"),
                },
            }
        },
    }
)
OPENAPI["components"]["schemas"]["Preferences"] = _PREFERENCES
OPENAPI["components"]["securitySchemes"]["writeKey"] = {"type": "http", "scheme": "bearer"}
OPENAPI["components"]["securitySchemes"]["customerToken"] = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Customer-Token",
}
