"""With CRM_HASH_PII no plain email or phone reaches Kafka: events and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.config import Settings
from pipeline.errors import InvalidEvent, TerminalError
from pipeline.events import Alias, Identify, Page, Track
from pipeline.sources.ingest import Ingestor
from pipeline.transforms.enrich import enrich
from pipeline.transforms.identifiers import canonical
from pipeline.transforms.request_context import RequestContext
from pipeline.transforms.sendgrid import to_email_event
from pipeline.wire.dead_letter import DeadLetter, from_headers
from pipeline.worker.outputs import QueuedOutputs, dead_letter

SALT = "pepper"
NOW = datetime.now(UTC)
EMAIL, PHONE = "Jane.Doe@Example.com", "+44 20 7946 0958"
H_EMAIL = canonical("email", EMAIL, salt=SALT)
H_PHONE = canonical("phone", PHONE, salt=SALT)
PLAIN = ("jane.doe", "7946")


def _enrich(event: Any, **kw: Any) -> Any:
    return enrich(event, received_at=NOW, source="s", message_id="m", salt=SALT, **kw)


def _plain_in(data: bytes) -> list[str]:
    low = data.lower()
    return [p for p in PLAIN if p.encode() in low]


def test_user_id_and_previous_id_that_are_emails_hash_like_the_email():
    out = _enrich(Track(event="x", user_id=EMAIL))
    assert out.user_id == H_EMAIL and out.identities["user_id"] == H_EMAIL
    again = _enrich(Track(event="y", user_id=" jane.doe@example.com"))
    assert again.identities["user_id"] == H_EMAIL  # deterministic: identity still links
    assert _enrich(Track(event="x", user_id="U-42")).user_id == "U-42"  # as sent
    alias = _enrich(Alias(user_id="u1", previous_id=EMAIL))
    assert alias.previous_id == H_EMAIL and alias.identities["anonymous_id"] == H_EMAIL
    # lookups (API, crm forget) go through canonical and find the same key
    assert canonical("user_id", EMAIL, salt=SALT) == H_EMAIL
    assert canonical("user_id", EMAIL, salt=SALT, hash_pii=False) == EMAIL


def test_traits_spelled_otherwise_are_hashed_and_identify():
    out = _enrich(Identify(user_id="u1", traits={"E-mail": EMAIL, "Phone": PHONE, "n": "J"}))
    assert out.traits == {"E-mail": H_EMAIL, "Phone": H_PHONE, "n": "J"}
    assert out.identities["email"] == H_EMAIL and out.identities["phone"] == H_PHONE


def test_properties_query_strings_and_text_fields_are_hashed():
    page = Page(
        anonymous_id="a",
        name=f"Welcome {EMAIL}",
        properties={"email": EMAIL, "phone": PHONE, "url": f"https://s.example/?e={EMAIL}"},
        context={
            "page": {
                "url": "https://s.example/p?email=jane.doe%40example.com&utm_source=x",
                "search": "?email=jane.doe%40example.com&utm_source=x",
                "referrer": f"https://mail.example/?to={EMAIL}",
            }
        },
    )
    out = _enrich(page, request=RequestContext(ip="10.0.0.1"))
    assert not _plain_in(msgspec.json.encode(out)), msgspec.json.encode(out)
    assert out.properties["email"] == H_EMAIL and out.properties["phone"] == H_PHONE
    assert out.context["page"]["url"] == f"https://s.example/p?email={H_EMAIL}&utm_source=x"
    assert out.name == f"Welcome {H_EMAIL}"
    assert out.context["campaign"] == {"source": "x"}  # parsed as before


def test_no_walk_when_hashing_is_off():
    ev = Track(event="x", user_id=EMAIL, properties={"email": EMAIL})
    out = enrich(ev, received_at=NOW, source="s", message_id="m", hash_pii=False)
    assert out.user_id == EMAIL and out.properties["email"] == EMAIL


def _ingestor(hash_pii: bool = True) -> Ingestor:
    return Ingestor(Settings(pii_salt=SALT, hash_pii=hash_pii))


def test_collector_records_and_dead_letters_carry_no_plain_identifier():
    raws = [
        msgspec.json.encode(e)
        for e in (
            {"type": "track", "event": "x", "userId": EMAIL, "shopper": {"mobile": PHONE}},
            {"type": "track", "event": "x", "anonymousId": "a", "properties": {"phone": PHONE}},
            {"type": "identify", "traits": {"email": EMAIL}},  # no identifier: dead letter
            {"type": "pageview", "email": EMAIL, "phone": PHONE},  # unknown type
        )
    ]
    raws.append(b'{"type": "track", "email": "jane.doe@example.com", ')  # malformed
    prepared = _ingestor().prepare_raw(raws, source="batch")
    assert prepared.accepted == 2 and len(prepared.rejected) == 3
    for record in prepared.records:
        assert not _plain_in(record.value), record.value
        assert not _plain_in(b"".join(v for _k, v in record.headers or []))
    letters = [from_headers(r.value, r.headers) for r in prepared.records if r.headers]
    assert all(H_EMAIL.encode() in letter.original for letter in letters)
    kept = _ingestor(hash_pii=False).prepare_raw(raws, source="batch")
    assert all(_plain_in(r.value) for r in kept.records)  # CRM_HASH_PII=false: as sent


def test_sendgrid_deferred_items_are_dead_lettered_hashed():
    item = {"email": EMAIL, "event": "deferred", "timestamp": int(NOW.timestamp()), "attempt": "5"}
    try:
        mapped: Any = to_email_event(item)
    except TerminalError as exc:
        mapped = exc
    assert isinstance(mapped, TerminalError)
    prepared = _ingestor().prepare_events([(msgspec.json.encode(item), mapped)], source="sendgrid")
    [record] = prepared.records
    assert prepared.rejected and not _plain_in(record.value)
    assert msgspec.json.decode(record.value)["email"] == H_EMAIL


def test_reason_is_hashed_in_the_dead_letter_but_not_for_the_client():
    exc = InvalidEvent(f"not a phone number: '{PHONE} x'", "identifier")
    letter = DeadLetter.protected(
        b"{}", error_type="identifier", reason=exc.reason, source="s", received_at=NOW, salt=SALT
    )
    assert "7946" not in letter.reason and letter.reason.startswith("not a phone number")


def test_worker_dead_letters_are_hashed():
    out = QueuedOutputs()
    poison = msgspec.json.encode({"oops": True, "email": EMAIL})
    dead_letter(out, "dlq", poison, "undecodable", "schema", "worker:identity", salt=SALT)
    [record] = out._queued
    assert not _plain_in(record.value) and H_EMAIL.encode() in record.value
