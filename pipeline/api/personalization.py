"""Personalization answers and the preference centre, on top of the profile reader.

``GET /v1/personalize/...`` reads one profile from Redis and decides every
requested slot in process (no other I/O), which is what keeps it within a few
milliseconds. ``PUT /v1/profiles/{id}/preferences`` emits a ``Preferences
Updated`` event to Kafka, so stated preferences land in the profile through
the same path as every other event (and in the archive, and in ClickHouse).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import ua_parser
from starlette.requests import Request

from pipeline.events import Track
from pipeline.kafka.producer import ConfirmedProducer, Record
from pipeline.transforms.fold import PREFERENCES_EVENT
from pipeline.transforms.identifiers import strongest
from pipeline.transforms.personalize import PersonalizationConfig, decide
from pipeline.transforms.profile import Profile
from pipeline.transforms.profile_view import LazyView

if TYPE_CHECKING:
    from pipeline.api.app import ProfileReader

Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Preferences(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a customer may state in the preference centre (all optional)."""

    categories: Annotated[list[Category], msgspec.Meta(max_length=20)] | None = None
    excluded_categories: Annotated[list[Category], msgspec.Meta(max_length=50)] | None = None
    channels: dict[str, bool] | None = None  # e.g. {"email": true, "sms": false}
    language: Annotated[str, msgspec.Meta(pattern="^[a-z]{2}(-[A-Z]{2})?$")] | None = None


_preferences = msgspec.json.Decoder(Preferences)
_encode = msgspec.json.Encoder().encode


class BadRequest(ValueError):
    """A request the caller must fix; the message says how."""


@lru_cache(maxsize=4096)
def device_from_user_agent(user_agent: str) -> str:
    if not user_agent:
        return "unknown"
    parsed = ua_parser.parse(user_agent)
    brand = (parsed.device.brand or "") if parsed.device else ""
    family = (parsed.device.family or "") if parsed.device else ""
    if "Tablet" in brand or family == "iPad":
        return "tablet"
    os_family = parsed.os.family if parsed.os else ""
    return "mobile" if os_family in ("iOS", "Android") or "Mobile" in user_agent else "desktop"


def request_context(request: Request) -> dict[str, Any]:
    q = request.query_params
    tz_name = q.get("tz") or "UTC"
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"unknown time zone {tz_name!r} (use an IANA name)") from None
    local = datetime.now(tz)
    return {
        "city": q.get("city"),
        "country": q.get("country"),
        "page": q.get("page"),
        "device": q.get("device") or device_from_user_agent(request.headers.get("user-agent", "")),
        "hour": local.hour,
        "weekday": local.strftime("%A").lower(),
    }


def answer(
    config: PersonalizationConfig,
    request: Request,
    found: tuple[str, Profile] | None,
    rules_digest: str,
) -> dict[str, Any]:
    """Every requested slot (``?slot=`` repeated; all slots without one)."""
    wanted = request.query_params.getlist("slot") or list(config.slots)
    unknown = [s for s in wanted if s not in config.slots]
    if unknown:
        raise BadRequest(f"unknown slot {unknown[0]!r}; slots: {', '.join(config.slots)}")
    now = int(time.time() * 1000)
    facts: dict[str, Any] = LazyView(found[1], now) if found else {}
    facts["context"] = request_context(request)
    slots = {name: decide(config, config.slots[name], facts, now) for name in wanted}
    return {
        "customer_id": found[0] if found else None,
        "known": found is not None,
        "loyalty": facts.get("loyalty"),
        "segments": facts.get("segments", []),
        "rules_version": rules_digest,
        "slots": slots,
    }


def preference_event(profile: Profile, prefs: Preferences, now: datetime) -> Record:
    """The event that carries stated preferences into the pipeline, keyed like the collector."""
    key = strongest({k: v[0] for k, v in profile.identifiers.items() if v})
    if key is None:
        raise BadRequest("the customer has no usable identifier to attach preferences to")
    kind, value = key
    event = Track(
        message_id=f"pref-{uuid.uuid4()}",
        event=PREFERENCES_EVENT,
        properties=msgspec.to_builtins(prefs),
        user_id=value if kind == "user_id" else None,
        anonymous_id=value if kind == "anonymous_id" else None,
        timestamp=now,
        received_at=now,
        identities={kind: value},
        source="preference-centre",
    )
    return Record("", f"{kind}:{value}".encode(), _encode(event))


def parse_preferences(body: bytes) -> Preferences:
    try:
        prefs = _preferences.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid preferences: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if prefs == Preferences():
        raise BadRequest(
            "no preferences given; send categories, excluded_categories, channels or language"
        )
    return prefs


class PreferenceCentre:
    def __init__(self, reader: ProfileReader, producer: ConfirmedProducer, topic: str) -> None:
        self.reader, self.producer, self.topic = reader, producer, topic

    async def update(self, customer_id: str, body: bytes) -> dict[str, Any] | None:
        prefs = parse_preferences(body)
        found = await self.reader.by_customer(customer_id)
        if found is None:
            return None
        record = preference_event(found[1], prefs, datetime.now(UTC))
        await self.producer.send_async([record._replace(topic=self.topic)])
        event = msgspec.json.decode(record.value)
        return {
            "customer_id": found[0],
            "event_id": event["messageId"],
            "preferences": msgspec.to_builtins(prefs),
            "status": "accepted: the profile reflects it within about a second",
        }
