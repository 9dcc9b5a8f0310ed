"""What the collector adds to an event's ``context`` from the request, as Segment does.

* ``context.ip`` from the connection (or a trusted proxy header) and
  ``context.userAgent`` from the request, when the SDK did not send them;
* ``context.userAgentParsed``: browser, OS and device families and a bot flag;
* ``context.campaign`` from the page URL's UTM parameters when the SDK did not
  parse them (analytics-next does, most server SDKs do not);
* ``context.referrer``: the referring host and its medium;
* batch-level ``context`` and ``integrations`` (Segment's batch API allows them)
  merged under each event's own.

Pure functions: the collector passes a :class:`RequestContext`, nothing here reads
a socket.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ua_parser import parse as parse_ua

from pipeline.transforms.attribution import campaign_of, referrer_of

# ua-parser's "Spider" device covers the known crawlers; these catch the rest that say so.
_BOT = re.compile(r"bot\b|crawl|spider|slurp|headless|lighthouse|preview|monitor", re.I)
MAX_UA = 512


@dataclass(frozen=True)
class RequestContext:
    """What one HTTP request says about the events in it."""

    ip: str | None = None
    user_agent: str | None = None
    batch_context: dict[str, Any] = field(default_factory=dict)
    batch_integrations: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=4096)
def parsed_user_agent(ua: str) -> dict[str, Any]:
    """Browser, OS and device of a user-agent string, and whether it is a bot."""
    result = parse_ua(ua[:MAX_UA])
    out: dict[str, Any] = {}
    if result.user_agent:
        out["browser"] = result.user_agent.family
        if result.user_agent.major:
            out["browserVersion"] = result.user_agent.major
    if result.os:
        out["os"] = result.os.family
        if result.os.major:
            out["osVersion"] = result.os.major
    device = result.device.family if result.device else "Other"
    out["device"] = device
    out["isBot"] = device == "Spider" or bool(_BOT.search(ua))
    return out


def client_ip(peer: str | None, forwarded: str | None) -> str | None:
    """The client's address: the first valid entry of a trusted proxy header, else the peer."""
    if forwarded:
        for part in forwarded.split(","):
            candidate = part.strip()
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                continue
    return peer


def truncate_ip(ip: str) -> str:
    """Zero the host part (/24 for IPv4, /48 for IPv6), the usual analytics anonymisation."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def enrich_context(
    context: dict[str, Any], request: RequestContext, *, web: bool
) -> dict[str, Any] | None:
    """The event's context with what the request adds; None when nothing changes.

    ``web``: the event is a web call (page, track, identify...), whose page URL and
    referrer are parsed; other channels only get the batch context and request facts.
    """
    out = {**request.batch_context, **context} if request.batch_context else dict(context)
    if "ip" not in out and request.ip:
        out["ip"] = request.ip
    ua = out.get("userAgent")
    if not isinstance(ua, str) and request.user_agent:
        ua = out["userAgent"] = request.user_agent[:MAX_UA]
    if isinstance(ua, str) and ua and "userAgentParsed" not in out:
        out["userAgentParsed"] = parsed_user_agent(ua)
    if web:
        page = _dict(out.get("page"))
        url = page.get("url") if isinstance(page.get("url"), str) else None
        if "campaign" not in out:
            search = page.get("search") if isinstance(page.get("search"), str) else None
            found = campaign_of(url, search if search else None)
            if found:
                out["campaign"] = found
        if "referrer" not in out:
            ref = page.get("referrer") if isinstance(page.get("referrer"), str) else None
            parsed = referrer_of(ref, url)
            if parsed:
                out["referrer"] = parsed
    # Everything above only adds keys (the event's own win over the batch's), so a change
    # shows in the size: no deep comparison of the nested page and traits dicts.
    return out if len(out) != len(context) else None


def merged_integrations(
    integrations: dict[str, Any], request: RequestContext
) -> dict[str, Any] | None:
    if not request.batch_integrations:
        return None
    return {**request.batch_integrations, **integrations}
