"""JSON responses of the collector's routes."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

_encode = msgspec.json.Encoder().encode


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(_encode(payload), status, headers=headers, media_type="application/json")


def error_response(
    status: int,
    error_type: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An error in the shape SDKs parse: Segment's and RudderStack's read top-level
    ``code`` and ``message`` (RudderStack's Python SDK raises KeyError without them);
    ``error`` keeps the structured form."""
    body = {
        "success": False,
        "code": error_type,
        "message": message,
        **extra,
        "error": {"type": error_type, "message": message},
    }
    return json_response(body, status, headers)
