"""Customer tokens: what lets a browser change one customer's preferences, and only theirs.

The write key is public (it sits in every page), so it cannot authorise changes to a
customer's data on its own. The site's backend, which knows who is logged in, issues a
short-lived token bound to that customer id::

    token = "<expires>.<signature>"
    expires   = Unix seconds after which the token is refused
    signature = hex(HMAC-SHA256(CRM_CUSTOMER_TOKEN_SECRET, "<customer id>:<expires>"))

Any language can compute it (``crm token --customer ID`` prints one). The browser sends it
as ``X-Customer-Token`` with the write key; a server-side read key needs no token.
"""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_TTL_S = 7 * 24 * 3600  # a token promising more than a week is refused whatever it says


class TokenError(ValueError):
    """Why a token was refused (said to the caller: it reveals nothing about customers)."""


def _signature(secret: str, customer_id: str, expires: int) -> str:
    message = f"{customer_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue(secret: str, customer_id: str, ttl_s: int = 3600, now: float | None = None) -> str:
    if not secret:
        raise TokenError("CRM_CUSTOMER_TOKEN_SECRET is not set")
    expires = int((time.time() if now is None else now) + min(ttl_s, MAX_TTL_S))
    return f"{expires}.{_signature(secret, customer_id, expires)}"


def verify(secret: str, token: str | None, customer_id: str, now: float | None = None) -> None:
    """Return if ``token`` was issued for ``customer_id`` and is still valid; else raise."""
    if not secret:
        raise TokenError("customer tokens are not enabled (CRM_CUSTOMER_TOKEN_SECRET)")
    if not token:
        raise TokenError("missing X-Customer-Token: the write key alone cannot change a customer")
    expires_text, _, signature = token.strip().partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12 or not signature:
        raise TokenError("malformed X-Customer-Token: expected <expires>.<hex signature>")
    expires = int(expires_text)
    expected = _signature(secret, customer_id, expires)
    if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
        raise TokenError("X-Customer-Token was not issued for this customer")
    current = time.time() if now is None else now
    if expires < current:
        raise TokenError("X-Customer-Token has expired")
    if expires > current + MAX_TTL_S:
        raise TokenError("X-Customer-Token expires too far ahead (at most 7 days)")
