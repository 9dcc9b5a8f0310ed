"""Emails and phones hashed by what they are, wherever they sit in an event or a dead letter.

``enrich`` hashes the identifiers it knows by name (``traits.email``, a channel
event's ``phone``); this module finds the rest by semantics:

* a key that names an email or a phone, in any case or spelling (``Email``,
  ``E-mail``, ``billing_email``, ``phoneNumber``, ``mobile``), at any depth, and the
  values nested under it;
* a value that is an email address, whatever its key (``properties.contact``);
* an email inside text (``mailto:``, a URL, a bounce reason), also URL-encoded
  (``jane%40example.com``), and query parameters named like an email or a phone
  (``?email=...&phone=%2B44...``).

Each becomes the salted hash an identifier of its kind gets (``identifiers.canonical``),
so a hash found here matches the identity graph's; a value that does not normalise
(``"555 1234 ext 9"`` as a phone) is hashed as it was sent. Phones in free text are
only recognised in dead letters (:func:`redact_text`, :func:`redact_dead_letter`):
in valid events a digit run is too often an order or a product id.

Everything here is pure and returns its input object unchanged when there is nothing
to hash, so callers can test identity to learn whether anything changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus

import msgspec

from pipeline.transforms.identifiers import (
    IdentifierError,
    canonical,
    hash_value,
    is_blocked,
    is_hashed,
)

Kind = Literal["email", "phone"]
Hasher = Callable[[str], str]

# An email inside text. The local part takes URL-encoded characters (``%2B``) but not
# ``/``, ``=``, ``?``, so a URL's path or parameter name is never taken for it; ``%40``
# is an encoded ``@``. Surrogates stand for bytes that were not UTF-8.
# Lengths are bounded (RFC 5321: 64 for the local part, 63 a label) so a long run of
# address characters costs linear time, not quadratic.
_LOCAL = r"[\w.!#$%&'*+^`{|}~\-\udc80-\udcff]{1,64}"
EMAIL_IN_TEXT = re.compile(_LOCAL + r"(?:@|%40)[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,8}")
# A phone inside text: international (+44 / 0044 ...), an area code in parentheses, or
# at least three groups of digits; 7 to 15 digits in all (checked after matching).
PHONE_IN_TEXT = re.compile(
    r"(?<![\w.+/:%-])"
    r"(?:(?:\+|00)\d[\d \-.()/]{5,22}\d"
    r"|\(\d{2,5}\)[ \-.]?\d[\d \-.]{3,16}\d"
    r"|\d{2,5}[ \-.]\d{2,5}[ \-.]\d{2,8}(?:[ \-.]\d{2,6})?)"
    r"(?![\w+/:%]|[.\-]\d| \d)"
)
_NOT_PHONE = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{4}|\d{4}[./]\d{2}[./]\d{2}"  # dates
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # IPv4 addresses
)
# A JSON member whose name says email or phone, in text that did not parse.
_PAIR_IN_TEXT = re.compile(r'"([^"\\]{1,64})"\s*:\s*"((?:[^"\\]|\\.){0,512})"')
_QUERY_PARAM = re.compile(r"(?<=[?&;#])([^=&;#?\s]{1,64})=([^&;#\s]*)")
_NON_ALNUM = re.compile(r"[^a-z0-9]")
_DIGIT = re.compile(r"\d")
_HASHES = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_MAX_PASSES = 16  # each pass removes an @; text with more is hashed whole


def _kind_of(name: str) -> Kind | None:
    if name.endswith(("email", "emailaddress", "mailaddress")) or name == "mail":
        return "email"
    if name.endswith(("phone", "phonenumber", "phoneno", "mobilenumber", "msisdn", "telephone")):
        return "phone"
    if name in ("mobile", "tel", "cell", "cellnumber", "fax", "sms", "whatsapp"):
        return "phone"
    return None


@lru_cache(maxsize=4096)
def key_kind(key: str) -> Kind | None:
    """``"email"`` or ``"phone"`` if a key's name says so, in any case, spelling or plural."""
    name = _NON_ALNUM.sub("", key.lower())
    return _kind_of(name) or (_kind_of(name[:-1]) if name.endswith("s") else None)


def exact_kind(key: str) -> Kind | None:
    """The kind of a key that is just another spelling of ``email`` or ``phone``."""
    name = _NON_ALNUM.sub("", key.lower())
    if name in ("email", "emailaddress"):
        return "email"
    if name in ("phone", "phonenumber"):
        return "phone"
    return None


def hasher(salt: str) -> Hasher:
    """The hash of a normalised email, as ``canonical("email", ...)`` gives it."""
    return lambda email: canonical("email", email, salt=salt)


def hash_as(kind: Kind, value: str, salt: str) -> str:
    """A value found under an email or phone key, hashed; what cannot be PII is kept.

    Valid identifiers get their canonical hash (the identity graph's); anything else
    with a trace of an identifier (an ``@``, six digits) is hashed as sent.
    """
    stripped = value.strip()
    if is_blocked(stripped) or is_hashed(stripped.lower()):
        return value
    try:
        return canonical(kind, stripped, salt=salt)
    except IdentifierError:
        pass
    if kind == "email" and "@" not in stripped and "%40" not in stripped:
        return value  # "yes", a campaign name: no address in it
    if kind == "phone" and len(_DIGIT.findall(_HASHES.sub("", stripped))) < 6:
        return value  # "iPhone 13", or text whose numbers are hashes already
    return hash_value(stripped.lower(), salt)


def _sub_emails(text: str, salt: str) -> str:
    def one(m: re.Match[str]) -> str:
        found = m.group(0)
        readable = unquote(found, errors="surrogateescape") if "%" in found else found
        try:
            return canonical("email", readable, salt=salt)
        except IdentifierError:  # a local part that decodes to spaces or a second @
            return hash_value(found.lower(), salt)

    for _ in range(_MAX_PASSES):
        out = EMAIL_IN_TEXT.sub(one, text)
        if out == text:
            return out
        text = out
    return hash_value(text, salt)  # pathological nesting of addresses: hash it whole


def _sub_phones(text: str, salt: str) -> str:
    def one(m: re.Match[str]) -> str:
        found = m.group(0)
        digits = len(_DIGIT.findall(found))
        if not 7 <= digits <= 15 or _NOT_PHONE.fullmatch(found):
            return found
        return hash_as("phone", found, salt)

    for _ in range(_MAX_PASSES):  # a replaced number can free a neighbour the lookahead held
        out = PHONE_IN_TEXT.sub(one, text)
        if out == text:
            return out
        text = out
    return text


def _sub_query(text: str, salt: str) -> str:
    def one(m: re.Match[str]) -> str:
        kind = key_kind(unquote(m.group(1)))
        if kind is None or not m.group(2):
            return m.group(0)
        value = unquote_plus(m.group(2), errors="surrogateescape")
        hashed = hash_as(kind, value, salt)
        return m.group(0) if hashed == value else f"{m.group(1)}={hashed}"

    return _QUERY_PARAM.sub(one, text)


# Whether an event may hold an email or a phone is decided before the walk, on the hot
# path, with as few scans of its bytes as possible: an address has an @, or a %40 in a
# URL (where a %-encoded phone may sit in a query string too). A phone field is found
# by its name among the keys of ``properties`` and ``context.traits`` (a set lookup, see
# ``enrich.names_a_phone``); deeper or rarer ones when the event is walked anyway.
_URL_PHONE_HINTS = (b"phone", b"mobile", b"tel=", b"cell=", b"fax=", b"sms=", b"msisdn")


def may_hold_pii(raw: bytes | memoryview | msgspec.Raw) -> bool:
    """False when the raw JSON of an event has no ``@``, and no ``%40`` or %-encoded
    phone parameter: then it holds no email, and no phone outside named fields."""
    data = raw if isinstance(raw, bytes) else bytes(raw)
    if b"@" in data:
        return True
    if b"%" not in data:
        return False
    if b"%40" in data:
        return True
    low = data.lower()
    return any(hint in low for hint in _URL_PHONE_HINTS)


def _spellings(*names: str) -> frozenset[str]:
    """snake_case names in the spellings clients use: camel, Pascal, kebab, upper, flat."""
    out: set[str] = set()
    for name in names:
        parts = name.split("_")
        camel = parts[0] + "".join(p.title() for p in parts[1:])
        for spelling in (name, camel, camel[:1].upper() + camel[1:], "-".join(parts)):
            out |= {spelling, spelling.upper(), spelling.lower()}
        out.add(" ".join(p.title() for p in parts))
    return frozenset(out)


_PHONE_BASES = ("phone", "mobile", "cell", "cellphone", "telephone", "tel", "msisdn", "sms")
PHONE_KEYS = _spellings(
    *_PHONE_BASES,
    *(f"{b}_number" for b in _PHONE_BASES),
    *(
        f"{w}_{b}"
        for w in ("mobile", "home", "work", "contact", "billing", "shipping")
        for b in ("phone", "number", "phone_number")
    ),
    "phone_no",
    "fax",
    "whatsapp",
    "phones",
)


def has_email_sign(text: str) -> bool:
    return "@" in text or "%40" in text


_PARAM_HINTS = ("phone", "mobile", "tel", "cell", "fax", "sms", "msisdn", "whatsapp")


def _query_may_hold(text: str) -> bool:
    if "@" in text or "%40" in text:
        return True
    low = text.lower()
    return any(hint in low for hint in _PARAM_HINTS)


def redact_string(value: str, salt: str, *, phones: bool = False) -> str:
    """Emails (and phone-named query parameters) in a string hashed; ``phones``: free-text
    phones too. Returns ``value`` itself when nothing is found."""
    out = value
    if "=" in out and _query_may_hold(out):
        out = _sub_query(out, salt)
    if "@" in out or "%40" in out:
        out = _sub_emails(out, salt)
    if phones:
        out = _sub_phones(out, salt)
    return value if out == value else out


def _redact_str(value: str, salt: str, kind: Kind | None, phones: bool) -> str:
    if kind is not None:
        hashed = hash_as(kind, value, salt)
        if hashed is not value:
            return hashed
    if phones or "@" in value or "%" in value or "=" in value:
        return redact_string(value, salt, phones=phones)
    return value


def redact_tree(value: Any, salt: str, kind: Kind | None = None, *, phones: bool = False) -> Any:
    """A decoded JSON value with every email and phone hashed (see the module's docstring).

    ``kind`` is the kind of the key the value sits under (inherited by nested values
    whose own key says nothing). Containers are copied only where something changed.
    """
    if type(value) is str:
        return _redact_str(value, salt, kind, phones)
    if type(value) is dict:
        for k in value:
            if "@" in k or "%40" in k:  # an address as a key: {"jane@example.com": 3}
                return _walk_dict(_rekeyed(value, salt), salt, kind, phones)
        return _walk_dict(value, salt, kind, phones)
    if type(value) is list:
        items: list[Any] | None = None
        for i, v in enumerate(value):
            t = type(v)
            if t is str:
                new = _redact_str(v, salt, kind, phones)
            elif t is dict or t is list:
                new = redact_tree(v, salt, kind, phones=phones)
            else:
                continue
            if new is not v:
                if items is None:
                    items = list(value)
                items[i] = new
        return value if items is None else items
    return value


_KINDS: dict[str, Kind | None] = {}  # key_kind's answers: a dict lookup is the hot part


def _kind_of_key(key: str) -> Kind | None:
    try:
        return _KINDS[key]
    except KeyError:
        if len(_KINDS) > 10_000:  # keys are mostly a schema's few; bound the odd flood
            _KINDS.clear()
        kind = _KINDS[key] = key_kind(key)
        return kind


def _walk_dict(value: dict[str, Any], salt: str, kind: Kind | None, phones: bool) -> Any:
    out: dict[str, Any] | None = None
    for k, v in value.items():
        t = type(v)
        if t is str:
            sub = _kind_of_key(k) or kind
            if sub is None and not phones and "@" not in v and "%" not in v and "=" not in v:
                continue  # the common case, decided without a call
            new = _redact_str(v, salt, sub, phones)
        elif t is dict or t is list:
            new = redact_tree(v, salt, _kind_of_key(k) or kind, phones=phones)
        else:
            continue
        if new is not v:
            if out is None:
                out = dict(value)
            out[k] = new
    return value if out is None else out


def _rekeyed(value: dict[str, Any], salt: str) -> dict[str, Any]:
    out = {redact_string(k, salt) if has_email_sign(k) else k: v for k, v in value.items()}
    return value if list(out) == list(value) else out


def redact_text(text: str, salt: str) -> str:
    """Text that is not JSON (or a reason): JSON-like members named email or phone, emails,
    phone-named query parameters and phone-shaped numbers, each hashed."""

    def pair(m: re.Match[str]) -> str:
        kind = key_kind(m.group(1))
        if kind is None:
            return m.group(0)
        hashed = hash_as(kind, m.group(2), salt)
        return m.group(0) if hashed == m.group(2) else f'"{m.group(1)}":"{hashed}"'

    out = _PAIR_IN_TEXT.sub(pair, text) if '":' in text or '" :' in text else text
    out = redact_string(out, salt, phones=True)
    return text if out == text else out


_json_encode = msgspec.json.Encoder().encode


def redact_dead_letter(original: bytes, salt: str) -> bytes:
    """A dead letter's original with identifiers hashed, its shape kept.

    JSON is decoded, walked (:func:`redact_tree`, free-text phones included) and
    re-encoded compactly; an original with nothing to hash is returned as is, byte for
    byte. Anything else is treated as text (:func:`redact_text`): bytes that are not
    UTF-8 are kept as they were (decoded and re-encoded with ``surrogateescape``), so a
    dead letter for invalid UTF-8 still shows the offending bytes, though a redaction
    before them moves them from the offset the reason names.
    """
    try:
        decoded = msgspec.json.decode(original)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        text = original.decode("utf-8", "surrogateescape")
        out = redact_text(text, salt)
        return original if out is text else out.encode("utf-8", "surrogateescape")
    redacted = redact_tree(decoded, salt, phones=True)
    return original if redacted is decoded else _json_encode(redacted)
