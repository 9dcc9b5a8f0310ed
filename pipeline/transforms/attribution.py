"""Where a visit came from: UTM parameters and the referrer, as Segment and Snowplow read them.

``campaign_of`` parses UTM parameters from a page URL into Segment's
``context.campaign`` shape; ``referrer_of`` classifies the referring host
(search, social, email, internal, other); ``touch_of`` is the attribution of one
event, which the profile keeps first-writer-wins as ``first_touch``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

UTM_KEYS = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}
# Registrable-name fragments of well-known referrers (Snowplow's referer-parser, abridged).
SEARCH = ("google.", "bing.", "duckduckgo.", "yahoo.", "yandex.", "baidu.", "ecosia.", "qwant.")
SOCIAL = (
    "facebook.",
    "instagram.",
    "t.co",
    "twitter.",
    "x.com",
    "linkedin.",
    "pinterest.",
    "reddit.",
    "tiktok.",
    "youtube.",
)
EMAIL = ("mail.google.", "outlook.live.", "mail.yahoo.")
MAX_VALUE = 200


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _matches(host: str, names: tuple[str, ...]) -> bool:
    return any(host == n or host.startswith(n) or f".{n}" in f".{host}" for n in names)


def campaign_of(url: str | None, search: str | None = None) -> dict[str, str]:
    """Segment's ``context.campaign`` from the UTM parameters of a URL (or its query string)."""
    text = search if search is not None else url
    if not text or "utm_" not in text.lower():  # the common case, without parsing
        return {}
    try:
        query = search if search is not None else urlsplit(text).query
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return {}
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(query.lstrip("?"), keep_blank_values=False)
    except ValueError:
        return out
    for key, value in pairs:
        name = UTM_KEYS.get(key.lower())
        if name and name not in out:
            out[name] = value[:MAX_VALUE]
    return out


def referrer_of(referrer: str | None, page_url: str | None = None) -> dict[str, str] | None:
    """The referring host and its medium; None without a referrer."""
    if not referrer:
        return None
    host = _host(referrer)
    if not host:
        return None
    if page_url and _host(page_url) == host:
        medium = "internal"
    elif _matches(host, EMAIL):
        medium = "email"
    elif _matches(host, SEARCH):
        medium = "search"
    elif _matches(host, SOCIAL):
        medium = "social"
    else:
        medium = "referral"
    return {"host": host, "medium": medium}


def _page(context: dict[str, Any]) -> dict[str, Any]:
    page = context.get("page")
    return page if isinstance(page, dict) else {}


def touch_of(context: dict[str, Any]) -> dict[str, str] | None:
    """The attribution of one web touch: campaign, else referrer, else direct.

    None for events without page context (server-side calls are not touches).
    Internal referrers (navigation within the site) are not a source.
    """
    page = _page(context)
    campaign = context.get("campaign")
    if not page and not isinstance(campaign, dict):
        return None
    touch: dict[str, str] = {}
    if isinstance(campaign, dict) and campaign:
        for key in ("source", "medium", "name", "term", "content"):
            value = campaign.get(key)
            if isinstance(value, str) and value:
                touch["campaign" if key == "name" else key] = value[:MAX_VALUE]
    url = page.get("url") if isinstance(page.get("url"), str) else None
    referrer = page.get("referrer") if isinstance(page.get("referrer"), str) else None
    found = referrer_of(referrer, url)
    if found and found["medium"] != "internal":
        touch["referrer"] = found["host"]
        touch.setdefault("source", found["host"])
        touch.setdefault("medium", found["medium"])
    if not touch:
        touch = {"source": "(direct)", "medium": "(none)"}
    if url:
        touch["landing_page"] = url[:2048]
    return touch
