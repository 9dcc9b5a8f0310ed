"""Demo output: segment movements of this run and personalization answers for a few visitors."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from pipeline.cli.profiles_report import load_profiles
from pipeline.config import Settings
from pipeline.kafka.inspect import read_range
from pipeline.transforms.profile import Profile
from pipeline.wire.change import Change


def movement_counts(settings: Settings, start: dict[int, int] | None) -> Counter[tuple[str, str]]:
    dec = msgspec.json.Decoder(Change)
    out: Counter[tuple[str, str]] = Counter()
    seen: set[str] = set()
    for m in read_range(settings, settings.topic("segments.changes"), start):
        c = dec.decode(m.value() or b"{}")
        if c.change_id in seen:
            continue  # a re-sent transition
        seen.add(c.change_id)
        label = c.name if c.kind == "segment" else f"{c.kind} -> {c.name}"
        out[(label, c.action)] += 1
    return out


def _visitors(profiles: list[Profile]) -> list[tuple[str, str]]:
    """(label, customer id) of a few telling customers; an unknown visitor last."""

    taken: set[str] = set()

    def first(pred: Any) -> Profile | None:
        ranked = sorted(profiles, key=lambda p: -p.events)
        found = next((p for p in ranked if pred(p) and p.customer_id not in taken), None)
        if found is not None:
            taken.add(found.customer_id)
        return found

    def consent(p: Profile, purpose: str) -> str | None:
        c = p.consent.get(purpose)
        return str(c.value) if c else None

    picks = [
        ("top customer", first(lambda p: p.orders >= 2)),
        ("high churn risk", first(lambda p: _risk(p) >= 0.5)),
        ("revoked personalization", first(lambda p: consent(p, "personalization") == "revoked")),
        ("browsing, no order", first(lambda p: p.orders == 0 and p.page_views > 2)),
    ]
    return [(label, p.customer_id) for label, p in picks if p is not None]


def _risk(p: Profile) -> float:
    score = p.scores.get("churn_risk")
    return float(score.value) if score is not None and score.value is not None else 0.0


def print_audience(
    settings: Settings, console: Console, api: str, changes_start: dict[int, int] | None
) -> None:
    moves = movement_counts(settings, changes_start)
    table = Table(title="audience movements this run (segments.changes topic)")
    for col in ("segment / ladder", "entered", "left"):
        table.add_column(col, justify="left" if col == "segment / ladder" else "right")
    labels = sorted({label for label, _a in moves})
    for label in labels:
        entered = moves[(label, "enter")] + moves[(label, "change")]
        table.add_row(label, f"{entered:,}", f"{moves[(label, 'exit')]:,}")
    console.print(table)

    headers = {"Authorization": f"Bearer {sorted(settings.read_key_set)[0]}"}
    answers = Table(title="GET /v1/personalize: what these visitors see")
    for col in ("visitor", "stage / tier", "segments", "home_hero (source)", "why", "recs"):
        answers.add_column(col, overflow="fold")
    visitors = [*_visitors(load_profiles(settings)), ("unknown visitor", f"anon-{uuid.uuid4()}")]
    with httpx.Client(base_url=api, headers=headers, timeout=5) as client:
        for label, cid in visitors:
            r = client.get(f"/v1/personalize/{cid}", params={"city": "Vilnius"})
            if r.status_code != 200:
                answers.add_row(label, "-", "-", f"HTTP {r.status_code}", r.text[:60], "-")
                continue
            doc = r.json()
            hero = doc["slots"].get("home_hero", {})
            recs = doc["slots"].get("product_recs", {})
            loyalty = doc.get("loyalty") or {}
            answers.add_row(
                label,
                f"{loyalty.get('stage') or '-'} / {loyalty.get('tier') or '-'}",
                ", ".join(doc.get("segments") or []) or "-",
                f"{hero.get('content')} ({hero.get('source')})",
                str(hero.get("reason", ""))[:48],
                ", ".join((recs.get("items") or [])[:2]) or str(recs.get("content")),
            )
    console.print(answers)
