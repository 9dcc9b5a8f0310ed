import json

import pytest

from pipeline.contracts import SCHEMA_DIR, generate, stale
from pipeline.errors import InvalidEvent
from pipeline.events import EVENT_TYPES
from pipeline.transforms.sendgrid import to_email_event
from pipeline.wire.dead_letter import DeadLetter, from_headers


def test_sendgrid_items_map_to_email_events():
    ev = to_email_event(
        {
            "email": "a@b.co",
            "event": "spamreport",
            "timestamp": 1700000000,
            "sg_event_id": "e1",
            "sg_message_id": "m1",
            "campaign_id": 42,
        }
    )
    assert ev.action == "spam_complaint" and ev.campaign_id == "42" and ev.message_id == "sg-e1"
    assert ev.timestamp is not None and ev.timestamp.year == 2023


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"email": "a@b.co", "event": "opened", "timestamp": 1}, "unsupported event 'opened'"),
        ({"event": "open", "timestamp": 1}, "email is required"),
        ({"email": "a@b.co", "event": "open"}, "timestamp"),
        ("nope", "must be an object"),
    ],
)
def test_sendgrid_rejects_with_reason(item, message):
    with pytest.raises(InvalidEvent, match=message):
        to_email_event(item)


def test_committed_schemas_match_the_models():
    assert stale() == [], "run `crm schemas export`"


def test_every_event_type_has_a_schema_file_with_its_tag():
    files = generate()
    for cls in EVENT_TYPES:
        tag = cls.__struct_config__.tag
        doc = json.loads((SCHEMA_DIR / f"{tag}.schema.json").read_text())
        assert doc["$id"] == f"{tag}.schema.json"
        assert f"{tag}.schema.json" in files


def test_dead_letter_round_trips_through_headers():
    from datetime import UTC, datetime

    letter = DeadLetter(
        original=b"{bad",
        error_type="malformed",
        reason="truncated",
        source="batch",
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        index=3,
    )
    back = from_headers(letter.value, letter.headers())
    assert back == letter
