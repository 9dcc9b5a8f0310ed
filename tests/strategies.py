"""Hypothesis strategies shared by unit and integration tests."""

from hypothesis import strategies as st

# Identifier sets of one event, over a small alphabet so that streams link and merge.
identity_sets = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.sampled_from(["u1", "u2", "u3"]),
        "email": st.sampled_from(["e1", "e2", "e3", "e4", "e5"]),
        "loyalty_id": st.sampled_from(["L1", "L2"]),
        "anonymous_id": st.sampled_from(["ck1", "ck2", "ck3", "ck4", "null"]),
    },
)
