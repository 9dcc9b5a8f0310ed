"""Emails and phones hashed by semantics: the pure transforms (``transforms.redact``)."""

from __future__ import annotations

import re

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.transforms.identifiers import canonical
from pipeline.transforms.redact import (
    key_kind,
    may_hold_pii,
    redact_dead_letter,
    redact_string,
    redact_text,
    redact_tree,
)

SALT = "pepper"
EMAIL = "Jane.Doe+shop@Example.com"
H_EMAIL = canonical("email", EMAIL, salt=SALT)
PHONE = "+44 20 7946 0958"
H_PHONE = canonical("phone", PHONE, salt=SALT)
# An email-shaped substring, decided independently of the module's own pattern.
EMAIL_SHAPED = re.compile(r"[\w.+\-]+(?:@|%40)[\w\-]+(?:\.[\w\-]+)+")


def test_key_names_are_read_for_their_meaning_not_their_spelling():
    for key in ("email", "Email", "E-mail", "EMAIL", "billing_email", "emailAddress", "emails"):
        assert key_kind(key) == "email", key
    for key in ("phone", "Phone", "phone_number", "mobilePhone", "mobile", "tel", "phones"):
        assert key_kind(key) == "phone", key
    for key in ("email_subject", "address", "hotel", "name", "telemetry", "cancelled"):
        assert key_kind(key) is None, key


def test_tree_hashes_by_key_and_by_value_at_any_depth_and_keeps_the_rest():
    tree = {
        "E-mail": EMAIL,
        "Phone": PHONE,
        "contact": {"who": EMAIL, "mobile": {"home": "020 7946 0958"}},
        "list": [EMAIL, 3, None, True],
        "note": f"write to {EMAIL} today",
        "url": "https://shop.example/p?email=jane.doe%2Bshop%40example.com&utm_source=news",
        "iphone": "13 Pro",  # a phone-named key whose value holds no number
        "price": 19.99,
        "title": "Shoes",
    }
    out = redact_tree(tree, SALT)
    assert out["E-mail"] == H_EMAIL and out["Phone"] == H_PHONE
    assert out["contact"]["who"] == H_EMAIL and out["list"] == [H_EMAIL, 3, None, True]
    assert out["contact"]["mobile"]["home"] == canonical("phone", "020 7946 0958", salt=SALT)
    assert out["note"] == f"write to {H_EMAIL} today"
    assert out["url"] == f"https://shop.example/p?email={H_EMAIL}&utm_source=news"
    assert out["iphone"] == "13 Pro" and out["price"] == 19.99 and out["title"] == "Shoes"
    assert tree["E-mail"] == EMAIL  # input untouched
    clean = {"a": {"b": ["x", 1]}, "url": "https://x.example/?q=1"}
    assert redact_tree(clean, SALT) is clean  # nothing found: the very same object


def test_an_address_as_a_key_is_hashed_too():
    out = redact_tree({"jane@example.com": 3}, SALT)
    assert out == {canonical("email", "jane@example.com", salt=SALT): 3}


def test_free_text_phones_are_found_but_not_dates_ips_or_plain_numbers():
    reason = (
        "call +44 20 7946 0958 or (555) 123-4567; timestamp 2026-11-25T01:55:30+00:00, "
        "2026-11-25, ip 192.168.100.200, event is 2000000 bytes"
    )
    out = redact_text(reason, SALT)
    assert "7946" not in out and "123-4567" not in out
    assert "2026-11-25T01:55:30+00:00" in out and "192.168.100.200" in out
    assert "2026-11-25," in out and "2000000 bytes" in out


def test_dead_letter_json_keeps_its_shape_with_identifiers_hashed():
    item = {
        "email": EMAIL,
        "event": "deferred",
        "response": f"400 try again later for <{EMAIL}>",
        "attempt": "5",
        "timestamp": 1764000000,
    }
    out = msgspec.json.decode(redact_dead_letter(msgspec.json.encode([item]), SALT))
    assert out == [{**item, "email": H_EMAIL, "response": f"400 try again later for <{H_EMAIL}>"}]
    bad_phone = b'{"type":"consent","phone":"555-CALL ext 12345678","purpose":"sms"}'
    out = msgspec.json.decode(redact_dead_letter(bad_phone, SALT))
    assert "12345678" not in out["phone"] and out["purpose"] == "sms"
    clean = b'{ "type": "pageview", "anonymousId": "ck-x" }'
    assert redact_dead_letter(clean, SALT) is clean  # byte for byte when nothing is found


def test_dead_letter_text_and_bytes_that_are_not_utf8():
    text = f'{{"email": "{EMAIL}", "phone": "0044 20 7946 0958", oops'.encode()
    out = redact_dead_letter(text, SALT).decode()
    assert EMAIL.lower() not in out.lower() and "7946" not in out and out.endswith("oops")
    raw = b'\xff\xfe{"email": "jane@example.com", "x": "\xc3("}'
    out_b = redact_dead_letter(raw, SALT)
    assert b"jane@example.com" not in out_b
    assert out_b.startswith(b"\xff\xfe{") and out_b.endswith(b'"x": "\xc3("}')  # kept as sent
    assert canonical("email", "jane@example.com", salt=SALT).encode() in out_b


def test_hot_path_precheck():
    assert not may_hold_pii(b'{"type":"page","context":{"userAgent":"iPhone; Mobile Safari"}}')
    assert may_hold_pii(b'{"properties":{"contact":"jane@example.com"}}')
    assert may_hold_pii(b'{"context":{"page":{"url":"/?e=jane%40example.com"}}}')
    assert may_hold_pii(msgspec.Raw(b'{"context":{"page":{"url":"/?Phone=%2B4479"}}}'))


_pieces = st.sampled_from([*"ab.-+_%@40 :/?=&()x9'\"", "example.com", "%40", "+44 20 "])
_texts = st.lists(_pieces, max_size=30).map("".join) | st.text(max_size=60)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_text_redaction_is_idempotent_and_leaves_no_email_shaped_substring(text):
    once = redact_text(text, SALT)
    assert redact_text(once, SALT) == once
    assert EMAIL_SHAPED.search(once) is None, once
    string_once = redact_string(text, SALT)
    assert redact_string(string_once, SALT) == string_once
    assert EMAIL_SHAPED.search(string_once) is None, string_once


@settings(max_examples=300, deadline=None)
@given(
    # local parts with / = ? (RFC 5322 allows them) are left out: the pattern excludes
    # them so that a URL's path or parameter name is never taken for an address
    st.emails().filter(lambda e: not set(e.partition("@")[0]) & set("/=?")),
    st.text(max_size=20),
    st.text(max_size=20),
)
def test_every_email_in_text_goes(email, before, after):
    once = redact_text(f"{before} {email} {after}", SALT)
    assert email not in once and EMAIL_SHAPED.search(once) is None
    assert redact_text(once, SALT) == once


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.emails() | _texts,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["email", "Phone", "url", "a", "E-mail", "x"]), inner)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_tree_redaction_is_idempotent_and_leaves_no_email_shaped_string(value):
    once = redact_tree(value, SALT)
    assert redact_tree(once, SALT) == once
    for text in re.findall(r'"((?:[^"\\]|\\.)*)"', msgspec.json.encode(once).decode()):
        assert EMAIL_SHAPED.search(text) is None, text
    raw = msgspec.json.encode(value)
    letter = redact_dead_letter(raw, SALT)
    assert redact_dead_letter(letter, SALT) == letter
    assert EMAIL_SHAPED.search(letter.decode()) is None
