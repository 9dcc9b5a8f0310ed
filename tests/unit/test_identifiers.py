import pytest

from pipeline.transforms.identifiers import (
    IdentifierError,
    canonical,
    is_blocked,
    normalize_email,
    normalize_phone,
    strongest,
)


def test_email_normalisation():
    assert normalize_email("  Jane.Doe@Example.COM ") == "jane.doe@example.com"
    with pytest.raises(IdentifierError):
        normalize_email("not-an-email")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+370 612 34567", "+37061234567"),
        ("0037061234567", "+37061234567"),
        ("(555) 123-4567", "5551234567"),
    ],
)
def test_phone_normalisation(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["12", "call me", "+1234567890123456789"])
def test_bad_phones_are_rejected(raw):
    with pytest.raises(IdentifierError):
        normalize_phone(raw)


def test_hashing_is_stable_salted_and_idempotent():
    a = canonical("email", "Jane@Example.com")
    b = canonical("email", " jane@example.com")
    assert a == b and len(a) == 64
    assert canonical("email", a) == a  # hashing a hash changes nothing
    assert canonical("email", "jane@example.com", salt="s") != a
    assert canonical("email", "Jane@Example.com", hash_pii=False) == "jane@example.com"
    assert canonical("user_id", " u1 ") == "u1"


@pytest.mark.parametrize("value", ["", "null", "NULL", "anonymous", "0", "-1", " undefined ", None])
def test_blocked_values(value):
    assert is_blocked(value)


def test_strongest_follows_priority():
    assert strongest({"anonymous_id": "a", "email": "e"}) == ("email", "e")
    assert strongest({"anonymous_id": "a", "user_id": "u", "email": "e"}) == ("user_id", "u")
    assert strongest({"partner:x": "p"}) == ("partner:x", "p")
    assert strongest({}) is None
