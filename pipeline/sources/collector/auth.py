"""Write-key authentication the way Segment clients send it.

Server-side libraries use HTTP Basic with the write key as user name and an
empty password; analytics.js may instead put ``writeKey`` in the JSON body to
avoid a CORS preflight. Both are accepted.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Collection


def key_from_header(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return token.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def is_valid(key: str | None, keys: Collection[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if not key:
        return False
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)
