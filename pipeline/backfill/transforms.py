"""Beam wrappers around the pure transforms: parse, identity by component, profile combine.

Elements travel as JSON bytes between steps (cheap to encode on every runner);
each step decodes with the same msgspec models the workers use.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import msgspec
from apache_beam.metrics import Metrics

from pipeline.backfill import progress
from pipeline.events import Event
from pipeline.transforms.fold import DEFAULT_RULES, FoldRules, contribution, event_time_ms
from pipeline.transforms.identity import Ident, Rules
from pipeline.transforms.identity_batch import (
    UnionFind,
    dedupe,
    resolve_component,
)
from pipeline.transforms.profile import Profile, merge_into
from pipeline.transforms.profile import encode as encode_profile

_event_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()
EVENTS_TAG, MERGES_TAG, MEMBERS_TAG = "events", "merges", "members"
ROW_BUCKETS = 16  # ClickHouse insert groups per day: deterministic, so tokens repeat


class ParseEvent(beam.DoFn):
    """Archive line -> (usable identifiers, raw); bad lines are counted and skipped.

    Duplicates (same event id) share their identifiers, so they meet in one
    component, where ``dedupe`` keeps the first; no shuffle by event id needed.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.read = Metrics.counter("backfill", "events_read")
        self.bad = Metrics.counter("backfill", "undecodable")
        self.unusable = Metrics.counter("backfill", "no_usable_identifier")

    def process(self, raw: bytes) -> Iterator[tuple[list[Ident], bytes]]:
        progress.tick()
        try:
            event = _event_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.bad.inc()
            return
        self.read.inc()
        ids = self.rules.usable(event.identities)
        if not ids:
            self.unusable.inc()  # the stream dead-letters these too
            return
        yield (ids, raw)


class UnionIdentifiers(beam.CombineFn):
    """Connected components of identifiers, as a mergeable union-find."""

    def create_accumulator(self) -> UnionFind:
        return UnionFind()

    def add_input(self, acc: UnionFind, element: tuple[list[Ident], bytes]) -> UnionFind:
        acc.add_group((kind, value) for kind, value in element[0])
        return acc

    def merge_accumulators(self, accs: Iterable[UnionFind]) -> UnionFind:
        it = iter(accs)
        out = next(it)
        for acc in it:
            out.merge(acc)
        return out

    def extract_output(self, acc: UnionFind) -> dict[Ident, Ident]:
        return acc.roots()


def key_by_component(
    element: tuple[list[Ident], bytes], roots: dict[Ident, Ident]
) -> tuple[str, bytes]:
    ids, raw = element
    first = (ids[0][0], ids[0][1])  # lists after a trip through a coder
    kind, value = roots.get(first, first)
    return (f"{kind}:{value}", raw)


class ResolveComponent(beam.DoFn):
    """Identity rules over one component; emits per-customer events, rows and merges."""

    def __init__(self, rules: Rules, rows: bool) -> None:
        self.rules, self.rows = rules, rows
        self.merged = Metrics.counter("backfill", "merges")

    def process(self, element: tuple[str, Iterable[bytes]]) -> Iterator[Any]:
        _component, raws = element
        events = dedupe(_event_decoder.decode(r) for r in raws)
        resolved = resolve_component(events, self.rules)
        for a in resolved.assigned:
            raw = _encoder.encode(a.event)
            yield (a.survivor, raw)
            if not self.rows:
                continue
            day = a.event.received_at.date().isoformat() if a.event.received_at else ""
            bucket = zlib.crc32((a.event.message_id or "").encode()) % ROW_BUCKETS
            # Bytes and strings travel fast between steps; the writer builds the row.
            yield beam.pvalue.TaggedOutput(EVENTS_TAG, (f"{day}/{bucket}", (raw, a.customer_id)))
        for absorbed, survivor, event in resolved.merges:
            self.merged.inc()
            at = event_time(event)
            yield beam.pvalue.TaggedOutput(
                MERGES_TAG, (absorbed, survivor, at, event.message_id or "")
            )
        for survivor, members in resolved.members.items():
            idents = sorted((k, v) for k, vs in members.items() for v in vs)
            yield beam.pvalue.TaggedOutput(MEMBERS_TAG, (survivor, idents))


class CombineProfile(beam.CombineFn):
    """fold/combine from the profile algebra: add_input folds, merge_accumulators combines."""

    def __init__(self, rules: FoldRules = DEFAULT_RULES) -> None:
        self.rules = rules  # loyalty accrual, the same file the stream worker reads

    def create_accumulator(self) -> Profile:
        return Profile(customer_id="")

    def add_input(self, acc: Profile, raw: bytes) -> Profile:
        event = _event_decoder.decode(raw)
        return merge_into(acc, contribution(event, acc.customer_id, self.rules))

    def merge_accumulators(self, accs: Iterable[Profile]) -> Profile:
        it = iter(accs)
        out = next(it)
        for acc in it:
            merge_into(out, acc)
        return out

    def extract_output(self, acc: Profile) -> Profile:
        return acc


def event_time(event: Event) -> datetime:
    return event.received_at or datetime.fromtimestamp(event_time_ms(event) / 1000, UTC)


def with_customer_id(kv: tuple[str, Profile]) -> bytes:
    cid, profile = kv
    profile.customer_id = cid
    return encode_profile(profile)
