from datetime import UTC, datetime, timedelta

import pytest

from pipeline.errors import InvalidEvent
from pipeline.events import CookieSync, Email, Identify, Track
from pipeline.transforms.enrich import corrected_time, enrich, stable_message_id
from pipeline.transforms.identifiers import canonical
from pipeline.transforms.request_context import RequestContext, client_ip, truncate_ip

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


def test_invalid_trait_email_drops_that_trait_with_a_warning_not_the_identify():
    warnings: list[str] = []
    out = enrich(
        Identify(user_id="u", traits={"email": "nope", "plan": "pro"}),
        received_at=NOW,
        source="s",
        message_id="m",
        warnings=warnings,
    )
    assert isinstance(out, Identify) and out.traits == {"plan": "pro"}
    assert len(warnings) == 1 and warnings[0].startswith("traits.email dropped: not an email")
    assert out.identities == {"user_id": "u"}


def test_invalid_contact_email_of_a_store_receipt_is_still_terminal():
    with pytest.raises(InvalidEvent, match=r"email: not an email"):
        enrich(Email(action="open", email="nope"), received_at=NOW, source="s", message_id="m")


def test_original_timestamp_alone_is_the_event_time():
    # RudderStack's node SDK sends originalTimestamp and sentAt, never timestamp
    ts = NOW + timedelta(hours=1)
    ev = Track(
        event="x", anonymous_id="a", original_timestamp=ts, sent_at=ts + timedelta(seconds=2)
    )
    out = enrich(ev, received_at=NOW, source="batch", message_id="m")
    assert out.timestamp == NOW - timedelta(seconds=2) and out.original_timestamp == ts


def test_request_context_fills_ip_user_agent_campaign_referrer_and_batch_context():
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
    request = RequestContext(
        ip="203.0.113.9",
        user_agent=ua,
        batch_context={"library": {"name": "batch-lib"}, "locale": "lt-LT"},
        batch_integrations={"All": False},
    )
    page = {
        "url": "https://shop.example/sale?utm_source=news&utm_medium=email&utm_campaign=spring",
        "referrer": "https://www.google.com/search?q=shoes",
    }
    ev = Track(
        event="x",
        anonymous_id="a",
        context={"page": page, "locale": "en-GB"},
        integrations={"X": 1},
    )
    out = enrich(ev, received_at=NOW, source="batch", message_id="m", request=request)
    ctx = out.context
    assert ctx["ip"] == "203.0.113.9" and ctx["userAgent"] == ua
    assert ctx["userAgentParsed"] == {
        "browser": "Mobile Safari",
        "browserVersion": "17",
        "os": "iOS",
        "osVersion": "17",
        "device": "iPhone",
        "isBot": False,
    }
    assert ctx["campaign"] == {"source": "news", "medium": "email", "name": "spring"}
    assert ctx["referrer"] == {"host": "www.google.com", "medium": "search"}
    # the event's own context wins over the batch's; the batch's fills the gaps
    assert ctx["locale"] == "en-GB" and ctx["library"] == {"name": "batch-lib"}
    assert out.integrations == {"All": False, "X": 1}


def test_what_the_sdk_sent_wins_over_the_request():
    request = RequestContext(ip="203.0.113.9", user_agent="curl/8")
    ctx = {"ip": "10.0.0.1", "userAgent": "Googlebot/2.1", "campaign": {"name": "own"}}
    out = enrich(
        Track(event="x", anonymous_id="a", context=ctx),
        received_at=NOW,
        source="s",
        message_id="m",
        request=request,
    )
    assert out.context["ip"] == "10.0.0.1" and out.context["campaign"] == {"name": "own"}
    assert out.context["userAgentParsed"]["isBot"] is True


def test_client_ip_prefers_a_valid_trusted_header_entry_and_truncates():
    assert client_ip("10.0.0.1", "garbage, 198.51.100.7, 10.0.0.2") == "198.51.100.7"
    assert client_ip("10.0.0.1", None) == "10.0.0.1"
    assert truncate_ip("198.51.100.7") == "198.51.100.0"
    assert truncate_ip("2001:db8:1:2::5") == "2001:db8:1::"


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
