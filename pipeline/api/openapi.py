"""The OpenAPI 3.1 document of the profile and personalization API (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from pipeline.transforms.identifiers import PRIORITY

IDENTIFIER_TYPES = (*PRIORITY, "partner")

_PROFILE_RESPONSES = {
    "200": {"description": "The profile with derived fields (RFM, loyalty balance, email totals)"},
    "400": {"description": "Unknown identifier type or a value that cannot be normalised"},
    "401": {"description": "Missing or invalid read key"},
    "404": {"description": "Unknown customer"},
}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "CRM pipeline profile API", "version": "0.1.0"},
    "components": {"securitySchemes": {"readKey": {"type": "http", "scheme": "bearer"}}},
    "security": [{"readKey": []}],
    "paths": {
        "/v1/profiles/{customer_id}": {
            "get": {
                "summary": "Profile by customer id (absorbed ids resolve to the survivor)",
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
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
_DECIDE_RESPONSES = {
    "200": {
        "description": "Per slot: content, source (consent, preference, rule, model) and reason"
    },
    "400": {"description": "Unknown slot, time zone or identifier type"},
    "401": {"description": "Missing or invalid read key"},
}
OPENAPI["paths"].update(
    {
        "/v1/personalize/{customer_id}": {
            "get": {
                "summary": "What this customer should see in each slot, and why",
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    *_CONTEXT_PARAMS,
                ],
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
                "responses": {"200": {"description": "file, digest, loaded_at, error, slots"}},
            }
        },
        "/v1/profiles/{customer_id}/preferences": {
            "put": {
                "summary": "Preference centre: stated preferences, emitted as an event (write key)",
                "security": [{"writeKey": []}],
                "parameters": [
                    {
                        "name": "customer_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "categories": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "maxItems": 20,
                                    },
                                    "excluded_categories": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                    },
                                    "channels": {
                                        "type": "object",
                                        "additionalProperties": {"type": "boolean"},
                                    },
                                    "language": {
                                        "type": "string",
                                        "pattern": "^[a-z]{2}(-[A-Z]{2})?$",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {"description": "Accepted: the event is in Kafka"},
                    "400": {"description": "Invalid body; the message names the field"},
                    "401": {"description": "Missing or invalid write key"},
                    "404": {"description": "Unknown customer"},
                    "503": {"description": "Kafka unavailable; retry"},
                },
            }
        },
    }
)
OPENAPI["components"]["securitySchemes"]["writeKey"] = {"type": "http", "scheme": "bearer"}
