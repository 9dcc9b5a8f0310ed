"""Identifier normalisation, hashing and ranking.

Emails and phones are hashed with a salted SHA-256 before they reach Kafka so raw
PII never lands in the log. The same functions hash lookup values in the profile
API, which is why they live here and not in the collector.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

HASHED_KINDS = frozenset({"email", "phone"})
# Strongest first: the Kafka key of an event is its strongest identifier.
PRIORITY: tuple[str, ...] = ("user_id", "email", "loyalty_id", "phone", "anonymous_id")
BLOCKED_VALUES = frozenset(
    {"", "null", "none", "nil", "undefined", "anonymous", "unknown", "0", "-1", "n/a", "na", "test"}
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_STRIP = re.compile(r"[\s().\-/]")


class IdentifierError(ValueError):
    """An identifier that cannot be normalised (an email without @, a phone with letters)."""


def normalize_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise IdentifierError(f"not an email address: {value!r}")
    return email


def normalize_phone(value: str) -> str:
    """E.164-like: keep a leading +, drop separators, require 6 to 15 digits."""
    phone = _PHONE_STRIP.sub("", value.strip())
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    digits = phone[1:] if phone.startswith("+") else phone
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise IdentifierError(f"not a phone number: {value!r}")
    return phone


def is_hashed(value: str) -> bool:
    return bool(_HEX64.match(value))


def hash_value(normalized: str, salt: str = "") -> str:
    # surrogatepass: text from bytes that were not UTF-8 hashes too (same digest otherwise)
    return hashlib.sha256(f"{salt}{normalized}".encode("utf-8", "surrogatepass")).hexdigest()


def canonical(kind: str, value: str, *, salt: str = "", hash_pii: bool = True) -> str:
    """The form an identifier has in Kafka, Redis and lookups.

    Already-hashed values (64 hex characters, e.g. from a client that hashes
    itself) are kept as they are, so hashing is idempotent. With ``hash_pii`` an
    identifier of any other kind (a user id, an anonymous id) that is an email address
    is hashed like one; other values of those kinds are kept as sent.
    """
    value = value.strip()
    if kind in HASHED_KINDS:
        if is_hashed(value.lower()):
            return value.lower()
        normalized = normalize_email(value) if kind == "email" else normalize_phone(value)
        return hash_value(normalized, salt) if hash_pii else normalized
    if hash_pii and is_email(value):
        # an email used as a user id, anonymous id or alias: the hash of that email, so
        # the same address always gives the same key and identity still links
        return hash_value(value.lower(), salt)
    return value


def is_email(value: str) -> bool:
    """An identifier that is an email address (what ``canonical`` hashes for any kind)."""
    return "@" in value and _EMAIL.match(value) is not None


def is_blocked(value: str | None) -> bool:
    return value is None or value.strip().lower() in BLOCKED_VALUES


def strongest(identities: Mapping[str, str]) -> tuple[str, str] | None:
    """The highest-priority identifier present, used as the partitioning key."""
    for kind in PRIORITY:
        if kind in identities:
            return kind, identities[kind]
    for kind in sorted(identities):
        return kind, identities[kind]
    return None
