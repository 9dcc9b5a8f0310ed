"""The event contract: one Segment-compatible envelope and a typed event per channel.

These msgspec Structs are the source of truth; ``schemas/*.json`` is generated from
them (``crm schemas export``) and a unit test fails if the two drift. Wire names are
Segment's camelCase (``messageId``, ``anonymousId``, ``userId``, ``sentAt``) so
existing Segment and RudderStack SDKs can post to the collector unchanged; the
envelope's ``event_id`` is Segment's ``messageId``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=256)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Timestamp = Annotated[datetime, Meta(tz=True)]
Money = Annotated[float, Meta(ge=0, le=1e9)]
Currency = Annotated[str, Meta(pattern="^[A-Z]{3}$")]


class Envelope(
    msgspec.Struct,
    kw_only=True,
    omit_defaults=True,
    rename="camel",
    tag_field="type",
    forbid_unknown_fields=False,
):
    """Fields every event carries, whatever its channel.

    ``identities`` and ``received_at`` are stamped by the collector; clients may
    omit ``messageId`` (the collector derives a stable one from the raw bytes so a
    retried request is still recognisable as a duplicate).
    """

    message_id: Id | None = None
    anonymous_id: Id | None = None
    # RudderStack's SDKs send "userId": "" for anonymous visitors; empty means absent.
    user_id: Annotated[str, Meta(max_length=256)] | None = None
    timestamp: Timestamp | None = None
    original_timestamp: Timestamp | None = None
    sent_at: Timestamp | None = None
    received_at: Timestamp | None = None
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}
    identities: dict[str, str] = {}
    source: str | None = None
    replayed: bool = False


class ContactEnvelope(Envelope, kw_only=True):
    """Envelope of non-web channels, which carry contact identifiers directly.

    Emails and phones are normalised and hashed by the collector before Kafka.
    """

    email: Annotated[str, Meta(max_length=320)] | None = None
    phone: Annotated[str, Meta(max_length=64)] | None = None
    loyalty_id: Id | None = None


# --- Web (Segment spec) --------------------------------------------------------


class Track(Envelope, tag="track", kw_only=True):
    """A user action; e-commerce actions use Segment's names (``Order Completed``...)."""

    event: Name
    properties: dict[str, Any] = {}


class Page(Envelope, tag="page", kw_only=True):
    name: Name | None = None
    category: Name | None = None
    properties: dict[str, Any] = {}


class Screen(Envelope, tag="screen", kw_only=True):
    name: Name | None = None
    category: Name | None = None
    properties: dict[str, Any] = {}


class Identify(Envelope, tag="identify", kw_only=True):
    traits: dict[str, Any] = {}


class Alias(Envelope, tag="alias", kw_only=True):
    previous_id: Id


class Group(Envelope, tag="group", kw_only=True):
    """Membership of an account, company or household, with that group's traits."""

    group_id: Id
    traits: dict[str, Any] = {}


# --- Other channels ------------------------------------------------------------


class CookieSync(Envelope, tag="cookie_sync", kw_only=True):
    """Links our first-party cookie to another id (an ad partner's, a login, an email)."""

    cookie_id: Id
    linked_type: Literal["user_id", "email", "phone", "loyalty_id", "partner"]
    linked_id: Id
    partner: Name | None = None


EmailAction = Literal[
    "sent", "delivered", "open", "click", "bounce", "unsubscribe", "spam_complaint", "dropped"
]


class Email(ContactEnvelope, tag="email", kw_only=True):
    """One email provider event (SendGrid webhooks are mapped into this)."""

    action: EmailAction
    campaign_id: Id | None = None
    esp_message_id: Id | None = None
    url: Annotated[str, Meta(max_length=2048)] | None = None
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class LineItem(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    sku: Id
    category: Name | None = None
    brand: Name | None = None
    name: Name | None = None
    quantity: Annotated[int, Meta(ge=1, le=100_000)] = 1
    price: Money


class PosTransaction(ContactEnvelope, tag="pos_transaction", kw_only=True):
    """A till receipt; the loyalty card is how a store purchase finds its customer."""

    transaction_id: Id
    store_id: Id
    items: Annotated[list[LineItem], Meta(min_length=1, max_length=1000)]
    total: Money
    currency: Currency = "EUR"
    points_redeemed: Annotated[int, Meta(ge=0, le=1_000_000_000)] = 0  # Int64 balances hold it


ConsentPurpose = Literal["analytics", "personalization", "email_marketing", "advertising", "sms"]


class Consent(ContactEnvelope, tag="consent", kw_only=True):
    purpose: ConsentPurpose
    status: Literal["granted", "revoked"]


class Support(ContactEnvelope, tag="support", kw_only=True):
    """A contact with customer service: complaints feed churn risk and the loyalty ladder."""

    kind: Literal["complaint", "question", "compliment"]
    topic: Name
    channel: Literal["call_centre", "email", "chat", "store", "social"] = "call_centre"
    case_id: Id | None = None
    status: Literal["open", "resolved"] = "open"


Event = (
    Track
    | Page
    | Screen
    | Identify
    | Alias
    | Group
    | CookieSync
    | Email
    | PosTransaction
    | Consent
    | Support
)
EVENT_TYPES: tuple[type[Envelope], ...] = (
    Track,
    Page,
    Screen,
    Identify,
    Alias,
    Group,
    CookieSync,
    Email,
    PosTransaction,
    Consent,
    Support,
)
SEGMENT_TYPES = frozenset({"track", "page", "screen", "identify", "alias", "group"})


def event_type(event: Envelope) -> str:
    """The wire ``type`` tag of an event instance."""
    return str(event.__struct_config__.tag)


CHANNEL_BY_TYPE = {
    "track": "web",
    "page": "web",
    "screen": "app",
    "identify": "web",
    "alias": "web",
    "group": "web",
    "cookie_sync": "cookie",
    "email": "email",
    "pos_transaction": "pos",
    "consent": "consent",
    "support": "support",
}
