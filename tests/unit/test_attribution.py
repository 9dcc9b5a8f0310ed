"""Attribution, groups and context traits: what web calls add to the profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.events import Group, Identify, Page, Track
from pipeline.transforms.attribution import campaign_of, referrer_of, touch_of
from pipeline.transforms.fold import fold
from pipeline.transforms.profile import Profile, combine
from pipeline.transforms.profile_view import render

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_utm_parameters_become_segment_campaign_fields():
    url = "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=x"
    assert campaign_of(url) == {"source": "news", "medium": "email", "name": "spring", "term": "x"}
    assert campaign_of(None, "?utm_content=hero&utm_source=ig") == {
        "content": "hero",
        "source": "ig",
    }
    assert campaign_of("https://shop.example/?q=1") == {}


def test_referrers_are_classified_by_medium():
    page = "https://shop.example/a"
    assert referrer_of("https://www.google.lt/search?q=x", page) == {
        "host": "www.google.lt",
        "medium": "search",
    }
    assert referrer_of("https://t.co/abc", page)["medium"] == "social"  # type: ignore[index]
    assert referrer_of("https://shop.example/b", page)["medium"] == "internal"  # type: ignore[index]
    assert referrer_of("https://blog.example.org/", page)["medium"] == "referral"  # type: ignore[index]
    assert referrer_of("", page) is None and referrer_of("not a url", page) is None


def test_a_touch_is_campaign_else_referrer_else_direct_and_server_calls_are_none():
    assert touch_of({}) is None
    assert touch_of({"library": {"name": "analytics-node"}}) is None
    assert touch_of({"page": {"url": "https://s.example/"}}) == {
        "source": "(direct)",
        "medium": "(none)",
        "landing_page": "https://s.example/",
    }
    searched = touch_of({"page": {"url": "https://s.example/", "referrer": "https://bing.com/"}})
    assert searched == {
        "referrer": "bing.com",
        "source": "bing.com",
        "medium": "search",
        "landing_page": "https://s.example/",
    }
    paid = touch_of({"campaign": {"source": "news", "medium": "email", "name": "spring"}})
    assert paid == {"source": "news", "medium": "email", "campaign": "spring"}


def _page(eid: str, at: datetime, context: dict) -> Page:
    return Page(message_id=eid, anonymous_id="a", timestamp=at, context=context)


def test_first_touch_is_first_writer_wins_whatever_the_arrival_order():
    first = _page("m1", T0, {"campaign": {"source": "news", "name": "spring"}})
    later = _page("m2", T0 + timedelta(days=2), {"page": {"url": "https://s.example/"}})
    p1 = fold(fold(Profile(customer_id="c"), later), first)
    p2 = fold(fold(Profile(customer_id="c"), first), later)
    assert p1.first_touch == p2.first_touch
    assert p1.first_touch is not None and p1.first_touch.value["campaign"] == "spring"
    view = render(p1, int(T0.timestamp() * 1000))
    assert view["first_touch"]["source"] == "news" and view["first_touch"]["at"].startswith("2026")


def test_group_calls_keep_membership_and_group_traits_last_writer_wins():
    g1 = Group(message_id="g1", user_id="u", timestamp=T0, group_id="acme", traits={"plan": "free"})
    g2 = Group(
        message_id="g2",
        user_id="u",
        timestamp=T0 + timedelta(hours=1),
        group_id="acme",
        traits={"plan": "pro", "seats": 5},
    )
    g3 = Group(message_id="g3", user_id="u", timestamp=T0, group_id="initech")
    a = fold(fold(Profile(customer_id="c"), g2), g1)
    b = fold(Profile(customer_id="c"), g3)
    merged = combine(a, b)
    view = render(merged, 0)
    assert view["groups"] == {"acme": {"plan": "pro", "seats": 5}, "initech": {}}


def test_context_traits_reach_the_profile_and_identify_traits_win_on_conflict():
    track = Track(
        message_id="t1",
        anonymous_id="a",
        timestamp=T0,
        event="Signed Up",
        context={"traits": {"name": "Ada", "plan": "trial"}},
    )
    ident = Identify(
        message_id="i1",
        user_id="u",
        timestamp=T0 + timedelta(minutes=1),
        traits={"plan": "pro"},
        context={"traits": {"plan": "stale", "city": "Riga"}},
    )
    p = fold(fold(Profile(customer_id="c"), track), ident)
    assert {k: v.value for k, v in p.traits.items()} == {
        "name": "Ada",
        "plan": "pro",
        "city": "Riga",
    }
