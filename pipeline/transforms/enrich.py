"""Stamping what the collector knows and the client does not.

Event time is corrected for client clock skew the way Segment does it:
``timestamp + (received_at - sent_at)``; identifiers are collected into
``identities`` and emails and phones are replaced by their salted hashes.
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
from pipeline.transforms.identifiers import IdentifierError, canonical, is_blocked
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


def _hash_traits(
    traits: dict[str, Any], salt: str, hash_pii: bool, where: str, warnings: list[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Hash email/phone traits in place of the raw values; return the identities found.

    An invalid email or phone is dropped from the traits with a warning: the rest
    of the call (other traits, the event itself) is still good.
    """
    found: dict[str, str] = {}
    out = traits
    for kind in ("email", "phone"):
        value = traits.get(kind)
        if value is None:
            continue
        if out is traits:
            out = dict(traits)
        if not isinstance(value, str):
            del out[kind]
            warnings.append(f"{where}.{kind} dropped: expected a string")
            continue
        if is_blocked(value):
            continue
        try:
            hashed = canonical(kind, value, salt=salt, hash_pii=hash_pii)
        except IdentifierError as exc:
            del out[kind]
            warnings.append(f"{where}.{kind} dropped: {exc}")
            continue
        out[kind] = hashed
        found[kind] = hashed
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
) -> Event:
    """Return the event as it is published: corrected time, identities, hashed PII.

    ``request`` adds what the HTTP request knows (see ``request_context``); fields
    dropped on the way (an invalid ``traits.email``) are described in ``warnings``.
    """
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

    if event.user_id and not is_blocked(event.user_id):
        identities["user_id"] = event.user_id
    if event.anonymous_id and not is_blocked(event.anonymous_id):
        identities["anonymous_id"] = event.anonymous_id

    if isinstance(event, Identify) and event.traits:
        changes["traits"], found = _hash_traits(event.traits, salt, hash_pii, "traits", warnings)
        identities.update(found)
    elif isinstance(event, Group) and event.traits:
        # a group's contact email is hashed like a person's, but identifies no customer
        changes["traits"], _ = _hash_traits(event.traits, salt, hash_pii, "traits", warnings)
    ctx_traits = context.get("traits") if context else None
    if isinstance(ctx_traits, dict) and ctx_traits:
        hashed, found = _hash_traits(ctx_traits, salt, hash_pii, "context.traits", warnings)
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
        identities["anonymous_id"] = event.cookie_id
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
    elif isinstance(event, Alias) and not is_blocked(event.previous_id):
        identities.setdefault("anonymous_id", event.previous_id)

    client_time = event.timestamp or event.original_timestamp
    return msgspec.structs.replace(
        event,
        message_id=event.message_id or message_id,
        user_id=event.user_id or None,  # "" (RudderStack's anonymous visitor) is absent
        # RudderStack's server SDKs send only originalTimestamp: it is the client's time then
        timestamp=corrected_time(client_time, sent_at, received_at),
        original_timestamp=client_time,
        sent_at=sent_at,
        received_at=received_at,
        identities=identities,
        source=source,
        **changes,
    )
