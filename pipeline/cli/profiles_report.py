"""Demo output: a few resolved customers and the identity decisions behind them."""

from __future__ import annotations

import time
from collections import Counter

import msgspec
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings
from pipeline.kafka.inspect import read_range
from pipeline.stores.redis_client import sync_redis
from pipeline.transforms.profile import Profile
from pipeline.transforms.profile_view import render
from pipeline.wire.keys import RedisKeys


def load_profiles(settings: Settings) -> list[Profile]:
    r = sync_redis(settings)
    decoder = msgspec.json.Decoder(Profile)
    out = []
    for key in r.scan_iter(RedisKeys(settings.redis_prefix).profiles(), count=1000):
        raw = r.hget(key, "json")
        if raw:
            out.append(decoder.decode(raw))
    return out


def decision_counts(settings: Settings, start: dict[int, int] | None = None) -> Counter[str]:
    class _Action(msgspec.Struct):
        action: str

    dec = msgspec.json.Decoder(_Action)
    return Counter(
        dec.decode(m.value() or b"{}").action
        for m in read_range(settings, settings.topic("identity.merges"), start)
    )


def pick_examples(profiles: list[Profile]) -> list[tuple[str, Profile]]:
    """One visitor who started anonymous and logged in; one store buyer linked by card and email."""
    examples = []
    anon = [
        p
        for p in profiles
        if p.merges
        or (
            "anonymous_id" in p.identifiers
            and "user_id" in p.identifiers
            and p.counts.get("page", 0) > 1
        )
    ]
    if anon:
        examples.append(("started anonymous, later logged in", max(anon, key=lambda p: p.events)))
    store = [
        p
        for p in profiles
        if p.stores
        and "loyalty_id" in p.identifiers
        and "email" in p.identifiers
        and "web" in p.channels
    ]
    if store:
        examples.append(
            ("store purchase linked by loyalty card and email", max(store, key=lambda p: p.orders))
        )
    return examples


def print_profiles(
    settings: Settings, console: Console, merges_start: dict[int, int] | None = None
) -> int:
    profiles = load_profiles(settings)
    counts = decision_counts(settings, merges_start)
    console.print(
        f"profiles in Redis: [bold]{len(profiles):,}[/]; identity decisions this run: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    )
    now = int(time.time() * 1000)
    for title, p in pick_examples(profiles):
        view = render(p, now)
        table = Table(title=f"{title}: {p.customer_id}", show_header=False)
        table.add_column("field")
        table.add_column("value")
        ids = ", ".join(
            f"{k}={v[0][:12]}{'…' if len(v[0]) > 12 else ''}"
            for k, v in view["identifiers"].items()
        )
        table.add_row("identifiers", ids)
        table.add_row("merged customers", ", ".join(view["merged_customers"]) or "-")
        table.add_row(
            "events / channels",
            f"{view['events']} / "
            + ", ".join(f"{k} {v['events']}" for k, v in view["channels"].items()),
        )
        table.add_row(
            "web",
            f"{view['web']['sessions']} sessions, {view['web']['page_views']} pages, "
            f"{view['web']['cart_adds']} cart adds",
        )
        pur = view["purchases"]
        table.add_row(
            "purchases",
            f"{pur['orders']} orders, {pur['revenue']:.2f} revenue, "
            f"AOV {pur['average_order_value']:.2f}, stores {pur['stores']}",
        )
        table.add_row("email", str(view["email"]["totals"]))
        table.add_row(
            "loyalty",
            f"cards {view['loyalty']['cards']}, balance {view['loyalty']['points_balance']}",
        )
        table.add_row("traits", str(view["traits"]))
        console.print(table)
    return counts.get("merged", 0)
