from datetime import UTC, datetime, timedelta

import pytest

from pipeline.errors import InvalidEvent
from pipeline.events import CookieSync, Email, Identify, Track
from pipeline.transforms.enrich import corrected_time, enrich, stable_message_id
from pipeline.transforms.identifiers import canonical

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_clock_skew_is_corrected_from_sent_at():
    # The client clock is one hour fast: it says it sent at 13:00:05 what happened at 13:00:00.
    ts = NOW + timedelta(hours=1)
    assert corrected_time(ts, ts + timedelta(seconds=5), NOW) == NOW - timedelta(seconds=5)


def test_clock_skew_without_sent_at_keeps_timestamp_and_without_timestamp_uses_receipt():
    ts = NOW - timedelta(minutes=3)
    assert corrected_time(ts, None, NOW) == ts
    assert corrected_time(None, None, NOW) == NOW


def test_enrich_stamps_times_identities_and_source():
    ts = NOW + timedelta(hours=1)
    ev = Track(event="x", anonymous_id="ck1", user_id="u1", timestamp=ts, sent_at=ts)
    out = enrich(ev, received_at=NOW, source="batch", message_id="m")
    assert out.timestamp == NOW and out.original_timestamp == ts and out.received_at == NOW
    assert out.identities == {"user_id": "u1", "anonymous_id": "ck1"}
    assert out.message_id == "m" and out.source == "batch"


def test_batch_sent_at_applies_when_event_has_none():
    ts = NOW + timedelta(minutes=10)
    ev = Track(event="x", anonymous_id="a", timestamp=ts)
    out = enrich(ev, received_at=NOW, source="b", message_id="m", batch_sent_at=ts)
    assert out.timestamp == NOW


def test_identify_traits_email_is_hashed_before_kafka():
    ev = Identify(
        user_id="u1", traits={"email": "Jane@Example.com", "name": "Jane", "loyalty_id": "LC1"}
    )
    out = enrich(ev, received_at=NOW, source="s", message_id="m")
    hashed = canonical("email", "jane@example.com")
    assert out.traits["email"] == hashed and out.traits["name"] == "Jane"
    assert out.identities == {"user_id": "u1", "email": hashed, "loyalty_id": "LC1"}
    assert ev.traits["email"] == "Jane@Example.com"  # input untouched


def test_pii_hashing_can_be_disabled():
    ev = Email(action="open", email="Jane@Example.com")
    out = enrich(ev, received_at=NOW, source="s", message_id="m", hash_pii=False)
    assert out.email == "jane@example.com" and out.identities["email"] == "jane@example.com"


def test_invalid_identifier_is_terminal():
    with pytest.raises(InvalidEvent, match=r"traits.email: not an email"):
        enrich(
            Identify(user_id="u", traits={"email": "nope"}),
            received_at=NOW,
            source="s",
            message_id="m",
        )


def test_blocked_identifiers_are_not_identities():
    out = enrich(
        Track(event="x", anonymous_id="anonymous", user_id="null"),
        received_at=NOW,
        source="s",
        message_id="m",
    )
    assert out.identities == {}


def test_cookie_sync_links_cookie_and_partner_id():
    ev = CookieSync(cookie_id="ck1", linked_type="partner", partner="adnet", linked_id="p9")
    out = enrich(ev, received_at=NOW, source="s", message_id="m")
    assert out.identities == {"anonymous_id": "ck1", "partner:adnet": "p9"}


def test_generated_message_id_is_deterministic():
    assert stable_message_id(b"abc", "batch") == stable_message_id(b"abc", "batch")
    assert stable_message_id(b"abc", "batch") != stable_message_id(b"abd", "batch")
    assert stable_message_id(b"abc", "batch", 0) != stable_message_id(b"abc", "batch", 1)
