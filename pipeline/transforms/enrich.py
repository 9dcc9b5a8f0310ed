"""Stamping what the collector knows and the client does not.

Event time is corrected for client clock skew the way Segment does it:
``timestamp + (received_at - sent_at)``; identifiers are collected into
``identities`` and emails and phones are replaced by their salted hashes: the
known fields by name here, and, when ``scan`` says the event may hold more, every
email or phone found by semantics anywhere in it (:mod:`pipeline.transforms.redact`):
``properties.email``, a trait spelled ``E-mail``, an email as ``userId`` or
``previousId``, an address in a page URL's query string.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from pipeline.errors import InvalidEvent
from pipeline.events import (
    SEGMENT_TYPES,
    Alias,
    ContactEnvelope,
    CookieSync,
    Event,
    Group,
    Identify,
    event_type,
)
from pipeline.transforms.identifiers import IdentifierError, canonical, is_blocked, is_email
from pipeline.transforms.redact import PHONE_KEYS, exact_kind, redact_string, redact_tree
from pipeline.transforms.request_context import (
    RequestContext,
    enrich_context,
    merged_integrations,
)


def corrected_time(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Event time in the collector's clock.

    The client's clock may be wrong, but the gap between when it says the event
    happened and when it says it sent it is right; add that gap to our receipt.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return timestamp + (received_at - sent_at)


def stable_message_id(raw: bytes | memoryview, source: str, index: int = 0) -> str:
    """A deterministic id for events sent without messageId, so retries dedupe.

    The position in the request is part of it: two identical events in one batch
    are two events, while a retried request yields the same ids again.
    """
    digest = hashlib.blake2b(bytes(raw), digest_size=16, key=source.encode()[:64])
    digest.update(index.to_bytes(4, "big"))
    return "gen-" + digest.hexdigest()


# Envelope fields hashed by name below, or not text; every other string field of an
# event (``event``, ``name``, ``url``, a bounce ``reason``...) is searched when scanning.
_NOT_TEXT = frozenset(
    {"user_id", "anonymous_id", "previous_id", "cookie_id", "linked_id", "email", "phone"}
    | {"context", "integrations", "properties", "traits", "identities", "items"}
    | {"timestamp", "original_timestamp", "sent_at", "received_at", "source", "replayed"}
)
_TEXT_FIELDS: dict[type, tuple[str, ...]] = {}
_TREE_FIELDS = ("properties", "traits", "context", "integrations")


def _text_fields(cls: type) -> tuple[str, ...]:
    names = _TEXT_FIELDS.get(cls)
    if names is None:
        fields = msgspec.structs.fields(cls)
        names = _TEXT_FIELDS[cls] = tuple(f.name for f in fields if f.name not in _NOT_TEXT)
    return names


def names_a_phone(event: Event) -> bool:
    """Whether ``properties`` or ``context.traits`` has a key naming a phone (``phone``,
    ``Mobile``, ``phone_number``...): with ``redact.may_hold_pii``, whether to scan."""
    properties = getattr(event, "properties", None)
    if properties and not PHONE_KEYS.isdisjoint(properties):
        return True
    traits = event.context.get("traits") if event.context else None
    return isinstance(traits, dict) and not PHONE_KEYS.isdisjoint(traits)


def _pseudonymous(value: str | None, salt: str, hash_pii: bool) -> str | None:
    """A user id, anonymous id or alias as sent, unless it is an email address: then the
    email's hash (``canonical``), the same for every event, so identity still links."""
    if value and hash_pii and "@" in value and is_email(value.strip()):
        return canonical("user_id", value, salt=salt, hash_pii=True)
    return value


def _trait_keys(traits: dict[str, Any], variants: bool) -> list[tuple[str, str]]:
    """(key, kind) of the email and phone traits: ``email``/``phone``, and with ``variants``
    their other spellings (``Email``, ``E-mail``, ``phone_number``)."""
    keys: list[tuple[str, str]] = [(k, k) for k in ("email", "phone") if k in traits]
    if variants:
        keys += [
            (k, kind) for k in traits if k not in ("email", "phone") and (kind := exact_kind(k))
        ]
    return keys


def _hash_traits(
    traits: dict[str, Any],
    salt: str,
    hash_pii: bool,
    where: str,
    warnings: list[str],
    variants: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Hash email/phone traits in place of the raw values; return the identities found.

    An invalid email or phone is dropped from the traits with a warning: the rest
    of the call (other traits, the event itself) is still good.
    """
    found: dict[str, str] = {}
    out = traits
    for key, kind in _trait_keys(traits, variants):
        value = traits[key]
        if value is None:
            continue
        if out is traits:
            out = dict(traits)
        if not isinstance(value, str):
            del out[key]
            warnings.append(f"{where}.{key} dropped: expected a string")
            continue
        if is_blocked(value):
            continue
        try:
            hashed = canonical(kind, value, salt=salt, hash_pii=hash_pii)
        except IdentifierError as exc:
            del out[key]
            warnings.append(f"{where}.{key} dropped: {exc}")
            continue
        out[key] = hashed
        found.setdefault(kind, hashed)
    for key in ("loyalty_id", "loyaltyId"):
        value = traits.get(key)
        if isinstance(value, str) and not is_blocked(value):
            found["loyalty_id"] = value.strip()
    return out, found


def enrich(
    event: Event,
    *,
    received_at: datetime,
    source: str,
    message_id: str,
    batch_sent_at: datetime | None = None,
    salt: str = "",
    hash_pii: bool = True,
    request: RequestContext | None = None,
    warnings: list[str] | None = None,
    scan: bool | None = None,
) -> Event:
    """Return the event as it is published: corrected time, identities, hashed PII.

    ``request`` adds what the HTTP request knows (see ``request_context``); fields
    dropped on the way (an invalid ``traits.email``) are described in ``warnings``.
    ``scan``: search the whole event for emails and phones by semantics (default: when
    ``hash_pii``); the collector passes False for an event whose bytes show no sign of
    one (:func:`pipeline.transforms.redact.may_hold_pii`), which saves the walk; an
    identify's or a group's traits are searched all the same.
    """
    scan = hash_pii and (scan is None or scan)
    # traits are where identifiers live: an identify's or a group's are always searched
    scan_traits = hash_pii and (scan or isinstance(event, Identify | Group))
    sent_at = event.sent_at or batch_sent_at
    identities: dict[str, str] = {}
    changes: dict[str, Any] = {}
    warnings = warnings if warnings is not None else []
    context = event.context
    if request is not None:
        enriched = enrich_context(context, request, web=event_type(event) in SEGMENT_TYPES)
        if enriched is not None:
            context = changes["context"] = enriched
        integrations = merged_integrations(event.integrations, request)
        if integrations is not None:
            changes["integrations"] = integrations

    user_id = _pseudonymous(event.user_id or None, salt, hash_pii)
    anonymous_id = _pseudonymous(event.anonymous_id, salt, hash_pii)
    if anonymous_id is not event.anonymous_id:
        changes["anonymous_id"] = anonymous_id
    if user_id and not is_blocked(user_id):
        identities["user_id"] = user_id
    if anonymous_id and not is_blocked(anonymous_id):
        identities["anonymous_id"] = anonymous_id

    if isinstance(event, Identify) and event.traits:
        changes["traits"], found = _hash_traits(
            event.traits, salt, hash_pii, "traits", warnings, scan_traits
        )
        identities.update(found)
    elif isinstance(event, Group) and event.traits:
        # a group's contact email is hashed like a person's, but identifies no customer
        changes["traits"], _ = _hash_traits(
            event.traits, salt, hash_pii, "traits", warnings, scan_traits
        )
    ctx_traits = context.get("traits") if context else None
    if isinstance(ctx_traits, dict) and ctx_traits:
        hashed, found = _hash_traits(ctx_traits, salt, hash_pii, "context.traits", warnings, scan)
        if hashed is not ctx_traits:
            changes["context"] = {**context, "traits": hashed}
        for kind, value in found.items():
            identities.setdefault(kind, value)

    if isinstance(event, ContactEnvelope):
        for kind in ("email", "phone"):
            value = getattr(event, kind)
            if value and not is_blocked(value):
                try:
                    changes[kind] = canonical(kind, value, salt=salt, hash_pii=hash_pii)
                except IdentifierError as exc:
                    raise InvalidEvent(f"{kind}: {exc}", "identifier") from None
                identities[kind] = changes[kind]
        if event.loyalty_id and not is_blocked(event.loyalty_id):
            identities["loyalty_id"] = event.loyalty_id
    elif isinstance(event, CookieSync):
        cookie_id = _pseudonymous(event.cookie_id, salt, hash_pii) or event.cookie_id
        if cookie_id is not event.cookie_id:
            changes["cookie_id"] = cookie_id
        identities["anonymous_id"] = cookie_id
        kind = (
            f"partner:{event.partner or 'unknown'}"
            if event.linked_type == "partner"
            else event.linked_type
        )
        try:
            linked = canonical(event.linked_type, event.linked_id, salt=salt, hash_pii=hash_pii)
        except IdentifierError as exc:
            raise InvalidEvent(f"linkedId: {exc}", "identifier") from None
        if not is_blocked(linked):
            identities[kind] = linked
            changes["linked_id"] = linked
    elif isinstance(event, Alias):
        previous_id = _pseudonymous(event.previous_id, salt, hash_pii) or event.previous_id
        if previous_id is not event.previous_id:
            changes["previous_id"] = previous_id
        if not is_blocked(previous_id):
            identities.setdefault("anonymous_id", previous_id)

    if scan:
        _redact_rest(event, changes, salt, _TREE_FIELDS)
    elif scan_traits and changes.get("traits"):
        _redact_rest(event, changes, salt, ("traits",))
    client_time = event.timestamp or event.original_timestamp
    return msgspec.structs.replace(
        event,
        message_id=changes.pop("message_id", None) or event.message_id or message_id,
        user_id=user_id,  # "" (RudderStack's anonymous visitor) is absent
        # RudderStack's server SDKs send only originalTimestamp: it is the client's time then
        timestamp=corrected_time(client_time, sent_at, received_at),
        original_timestamp=client_time,
        sent_at=sent_at,
        received_at=received_at,
        identities=identities,
        source=source,
        **changes,
    )


def _redact_rest(event: Event, changes: dict[str, Any], salt: str, trees: tuple[str, ...]) -> None:
    """Emails and phones outside the fields hashed by name, into ``changes``: in the
    ``trees`` (dict fields) and, unless only traits are searched, the text fields."""
    for name in trees:
        value = changes.get(name, getattr(event, name, None))
        if value:
            redacted = redact_tree(value, salt)
            if redacted is not value:
                changes[name] = redacted
    if trees != _TREE_FIELDS:
        return
    for name in _text_fields(type(event)):
        value = getattr(event, name)
        if isinstance(value, str):
            redacted = redact_string(value, salt)
            if redacted is not value:
                changes[name] = redacted
