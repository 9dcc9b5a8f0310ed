"""Webhook bodies mapped onto events before the ingestor sees them (SendGrid)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pipeline.errors import InvalidEvent, TerminalError
from pipeline.events import Email, Event
from pipeline.transforms.sendgrid import to_email_event

_encode = msgspec.json.Encoder().encode


# 2000-01-01 to 2100-01-01: any time SendGrid can report (the event-time window of the
# settings applies after this); outside it is a broken sender, and past 9999 would overflow
UNIX_TIME_MIN, UNIX_TIME_MAX = 946_684_800, 4_102_444_800
_UNIX_TIME = msgspec.Meta(ge=UNIX_TIME_MIN, le=UNIX_TIME_MAX)
_CAMPAIGNS = frozenset({"campaign_id", "marketing_campaign_id"})


class _SendGridItem(msgspec.Struct):
    """The types of the fields the mapping reads (SendGrid sends more; they pass)."""

    event: str
    email: str
    timestamp: Annotated[int, _UNIX_TIME] | Annotated[float, _UNIX_TIME]
    sg_event_id: str | None = None
    sg_message_id: str | None = None
    campaign_id: str | int | None = None
    marketing_campaign_id: str | int | None = None
    url: str | None = None
    reason: str | None = None
    type: str | None = None


def _checked(event: Email) -> Email:
    """The contract's type checks on an event built field by field (a Struct's constructor
    checks nothing, so an object as ``url`` would reach Kafka)."""
    try:
        return msgspec.convert(msgspec.to_builtins(event), Email)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"sendgrid: {exc}", "schema") from None


def sendgrid_events(items: list[dict[str, Any]]) -> list[tuple[bytes, Event | TerminalError]]:
    """Each webhook item with its raw bytes, as an email event or the reason it is not one."""
    mapped: list[tuple[bytes, Event | TerminalError]] = []
    for item in items:
        raw = _encode(item)
        if isinstance(item, dict) and "" in (
            item.get("campaign_id"),
            item.get("marketing_campaign_id"),
        ):
            # an empty campaign id is no campaign id, whichever of the two fields it is in
            item = {k: v for k, v in item.items() if not (k in _CAMPAIGNS and v == "")}
        try:
            msgspec.convert(item, _SendGridItem)
            mapped.append((raw, _checked(to_email_event(item))))
        except msgspec.ValidationError as exc:
            mapped.append((raw, InvalidEvent(f"sendgrid: {exc}", "schema")))
        except TerminalError as exc:
            mapped.append((raw, exc))
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            # an object as `event` (unhashable), a timestamp past year 9999
            mapped.append((raw, InvalidEvent(f"sendgrid: {type(exc).__name__}: {exc}", "schema")))
    return mapped
