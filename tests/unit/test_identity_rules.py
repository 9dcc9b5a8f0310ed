from pathlib import Path

import pytest

from pipeline.rule_files import load_identity_rules as load_rules
from pipeline.transforms.identity import Rules, RulesError, decide, new_customer_id

RULES = Rules()
A, B = "cA", "cB"


def test_unknown_identifiers_create_a_deterministic_customer():
    d = decide({"anonymous_id": "ck1"}, {}, {}, RULES)
    assert d.created and d.customer_id == new_customer_id(("anonymous_id", "ck1"))
    assert d.attach == [("anonymous_id", "ck1")]


def test_anonymous_visitor_who_logs_in_keeps_their_customer():
    owners = {("anonymous_id", "ck1"): A}
    d = decide(
        {"anonymous_id": "ck1", "user_id": "u1"}, owners, {A: {"anonymous_id": {"ck1"}}}, RULES
    )
    assert d.customer_id == A and not d.created
    assert d.attach == [("user_id", "u1")] and d.merges == []


def test_two_known_customers_merge_through_an_email():
    owners = {("email", "e1"): B, ("anonymous_id", "ck1"): A}
    members = {A: {"anonymous_id": {"ck1"}}, B: {"email": {"e1"}, "loyalty_id": {"L1"}}}
    d = decide({"anonymous_id": "ck1", "email": "e1"}, owners, members, RULES)
    assert d.customer_id == B  # the strongest identifier's customer survives
    assert d.merges == [(A, ("anonymous_id", "ck1"))]


def test_shared_device_never_merges_two_user_ids():
    """u2 logs in on u1's laptop: a new customer for u2, the cookie moves to u2."""
    owners = {("anonymous_id", "ck1"): A}
    members = {A: {"user_id": {"u1"}, "anonymous_id": {"ck1"}}}
    d = decide({"user_id": "u2", "anonymous_id": "ck1"}, owners, members, RULES)
    assert d.created and d.customer_id == new_customer_id(("user_id", "u2"))
    assert d.merges == []
    assert d.moves == [(("anonymous_id", "ck1"), A)]


def test_shared_cookie_between_two_known_user_ids_is_reassigned_not_merged():
    owners = {("user_id", "u2"): B, ("anonymous_id", "ck1"): A}
    members = {A: {"user_id": {"u1"}, "anonymous_id": {"ck1"}}, B: {"user_id": {"u2"}}}
    d = decide({"user_id": "u2", "anonymous_id": "ck1"}, owners, members, RULES)
    assert d.customer_id == B and d.merges == []
    assert d.moves == [(("anonymous_id", "ck1"), A)]


def test_non_reassignable_conflict_is_dropped_with_reason():
    owners = {("user_id", "u2"): B, ("email", "e1"): A}
    members = {A: {"user_id": {"u1"}, "email": {"e1"}}, B: {"user_id": {"u2"}}}
    d = decide({"user_id": "u2", "email": "e1"}, owners, members, RULES)
    assert d.customer_id == B and d.merges == [] and d.moves == []
    ((ident, reason),) = d.dropped
    assert ident == ("email", "e1") and "user_id limit" in reason


def test_limit_per_type_drops_extra_identifier():
    owners = {("user_id", "u1"): A}
    members = {A: {"user_id": {"u1"}, "email": {"e1", "e2", "e3"}}}
    d = decide({"user_id": "u1", "email": "e4"}, owners, members, RULES)
    assert d.customer_id == A and d.attach == []
    assert d.dropped[0][0] == ("email", "e4") and "limit" in d.dropped[0][1]


@pytest.mark.parametrize("value", ["", "null", "Anonymous", "0", "-1", "undefined"])
def test_blocked_values_never_link(value):
    d = decide({"anonymous_id": value, "user_id": "u1"}, {}, {}, RULES)
    assert d.customer_id == new_customer_id(("user_id", "u1"))
    assert d.attach == [("user_id", "u1")]
    d = decide({"anonymous_id": value}, {}, {}, RULES)
    assert d.customer_id is None


def test_rules_file_loads_and_rejects_mistakes(tmp_path: Path):
    rules = load_rules(Path(__file__).parents[2] / "config" / "identity_rules.yaml")
    assert (
        rules.limit("user_id") == 1
        and "guest" in rules.blocked
        and rules.limit("partner:adnet") == 20
    )
    bad = tmp_path / "r.yaml"
    bad.write_text("limits: {user_id: 0}\n")
    with pytest.raises(RulesError, match="positive"):
        load_rules(bad)
    bad.write_text("prioritty: []\n")
    with pytest.raises(RulesError, match="unknown keys"):
        load_rules(bad)
    bad.write_text("limits: [\n")
    with pytest.raises(RulesError, match="line"):
        load_rules(bad)


def test_a_blocked_email_is_blocked_in_the_hashed_form_identifiers_arrive_in():
    from pipeline.config import REPO_ROOT
    from pipeline.rule_files import load_identity_rules
    from pipeline.transforms.identifiers import canonical

    rules = load_identity_rules(REPO_ROOT / "config" / "identity_rules.yaml", salt="s")
    hashed = canonical("email", "NoReply@Example.com", salt="s")
    as_user = canonical("user_id", "noreply@example.com", salt="s")
    d = decide({"email": hashed, "user_id": as_user, "anonymous_id": "ck9"}, {}, {}, rules)
    assert d.attach == [("anonymous_id", "ck9")]  # the shared inbox links nobody
