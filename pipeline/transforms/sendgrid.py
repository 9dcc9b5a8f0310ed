"""SendGrid Event Webhook items mapped onto our ``email`` event.

SendGrid posts a JSON array; each item has ``email``, ``event``, ``timestamp``
(unix seconds), ``sg_event_id``, ``sg_message_id`` and custom args such as
``campaign_id`` (https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.errors import InvalidEvent
from pipeline.events import Email, EmailAction

ACTIONS: dict[str, EmailAction] = {
    "processed": "sent",
    "delivered": "delivered",
    "open": "open",
    "click": "click",
    "bounce": "bounce",
    "dropped": "dropped",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
    "spamreport": "spam_complaint",
}


def to_email_event(item: Any) -> Email:
    """Map one webhook item; raise InvalidEvent naming the missing or unknown field."""
    if not isinstance(item, dict):
        raise InvalidEvent("sendgrid item must be an object", "schema")
    kind = item.get("event")
    if kind not in ACTIONS:
        raise InvalidEvent(f"sendgrid: unsupported event {kind!r}", "schema")
    email = item.get("email")
    if not isinstance(email, str) or not email:
        raise InvalidEvent("sendgrid: email is required", "schema")
    ts = item.get("timestamp")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise InvalidEvent("sendgrid: timestamp (unix seconds) is required", "schema")
    event_id = item.get("sg_event_id")
    campaign = item.get("campaign_id") or item.get("marketing_campaign_id")
    return Email(
        message_id=f"sg-{event_id}" if event_id else None,
        timestamp=datetime.fromtimestamp(float(ts), tz=UTC),
        email=email,
        user_id=item.get("user_id") if isinstance(item.get("user_id"), str) else None,
        action=ACTIONS[kind],
        campaign_id=str(campaign) if campaign is not None else None,
        esp_message_id=item.get("sg_message_id"),
        url=item.get("url"),
        reason=item.get("reason") or item.get("type"),
    )
