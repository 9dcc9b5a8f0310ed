"""The two stages of stream processing, independent of Faust so tests can drive them.

identity: events (keyed by strongest identifier) -> resolve against the shared
  identity graph -> events.by_customer (keyed by customer id) + merge log.
profile: events.by_customer -> fold into the profile table -> Redis.

How merges stay exact across partitions: when customer B is absorbed by A, the
identity stage has already repointed B's identifiers to A, so new events go to
A. B's partition then receives a MergeCommand *after* every event already routed
to B (same key, same partition, in order); it folds those, ships B's profile to
A as an Absorb keyed by A, and keeps a tombstone that redirects any late event
for B to A. A applies each merge id once. Every event id is assigned to exactly
one customer (the assignment is remembered in Redis, in the same transaction as
the graph change it caused), so a replayed event lands where it landed first,
re-sends its merge commands, and is dropped there as a duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.events import Event
from pipeline.metrics import DEAD_LETTERED, EVENTS_OUT, SEGMENT_CHANGES
from pipeline.models.scorer import Scorer
from pipeline.sinks.base import Sink
from pipeline.sinks.redis_profiles import FORGOTTEN
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.transforms.audience import AudienceRules, apply, leave
from pipeline.transforms.dead_letter import DeadLetter
from pipeline.transforms.fold import DEFAULT_RULES, event_time_ms, fold_into
from pipeline.transforms.identity import Decision
from pipeline.transforms.profile import Change, Profile, merge_into
from pipeline.transforms.profile import decode as decode_profile
from pipeline.transforms.profile import encode as encode_profile
from pipeline.worker.records import (
    Absorb,
    Forget,
    IdentityDecision,
    MergeCommand,
    RoutedEvent,
    Tick,
    encoder,
    routed_decoder,
)
from pipeline.worker.snapshot import snapshot_encoder, summarise

CLOCK_LEAD_MS = 5 * 60 * 1000  # an event stamped further ahead of the wall clock cannot
# drag the event-time clock (segment timers) into the future
Send = Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None], Awaitable[None]]
_event_decoder = msgspec.json.Decoder(Event)


class IdentityStage:
    def __init__(
        self, graph: RedisIdentityGraph, send: Send, *, by_customer: str, merges: str, dlq: str
    ) -> None:
        self.graph, self.send = graph, send
        self.by_customer, self.merges, self.dlq = by_customer, merges, dlq

    async def process(self, values: list[bytes]) -> None:
        events: list[Event] = []
        for raw in values:
            try:
                events.append(_event_decoder.decode(raw))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._dead_letter(
                    raw, f"undecodable event on the events topic: {exc}", "schema"
                )
        resolutions = await self.graph.resolve_batch(
            [(e.message_id or "", e.identities) for e in events]
        )
        now = datetime.now(UTC).isoformat()
        for event, res in zip(events, resolutions, strict=True):
            if res.customer_id is None:
                await self._dead_letter(
                    encoder.encode(event), "no usable identifier (all blocked)", "identity"
                )
                continue
            d = res.decision
            if d is not None:
                dropped = {f"{k}:{v}" for (k, v), _ in d.dropped}
                if dropped:
                    event = msgspec.structs.replace(
                        event,
                        identities={
                            k: v for k, v in event.identities.items() if f"{k}:{v}" not in dropped
                        },
                    )
                await self._log(d, event.message_id or "", now)
            cid = res.customer_id
            await self.send(
                self.by_customer,
                cid.encode(),
                encoder.encode(RoutedEvent(customer_id=cid, event=event)),
                None,
            )
            # On replay the merges come from Redis: the first attempt may have died
            # after changing the graph and before its merge commands reached Kafka.
            absorbed_ids = [m for m, _ in d.merges] if d is not None else res.replayed_merges
            for absorbed in absorbed_ids:
                cmd = MergeCommand(customer_id=absorbed, survivor=cid, merge_id=f"{absorbed}>{cid}")
                await self.send(self.by_customer, absorbed.encode(), encoder.encode(cmd), None)
        EVENTS_OUT.labels("by_customer").inc(len(events))

    async def _log(self, d: Decision, event_id: str, now: str) -> None:
        assert d.customer_id
        cid = d.customer_id

        def line(action: str, **fields: Any) -> IdentityDecision:
            return IdentityDecision(
                action=action, customer_id=cid, event_id=event_id, at=now, **fields
            )

        lines = [line("created")] if d.created else []
        lines += [
            line("merged", absorbed=a, identifier=list(via), reason=f"shared {via[0]}")
            for a, via in d.merges
        ]
        lines += [
            line(
                "moved",
                identifier=list(i),
                previous=prev,
                reason="reassignable identifier used by another customer",
            )
            for i, prev in d.moves
        ]
        lines += [line("dropped", identifier=list(i), reason=why) for i, why in d.dropped]
        for entry in lines:
            await self.send(self.merges, cid.encode(), encoder.encode(entry), None)

    async def _dead_letter(self, raw: bytes, reason: str, kind: str) -> None:
        letter = DeadLetter(
            original=raw,
            error_type=kind,
            reason=reason,
            source="worker:identity",
            received_at=datetime.now(UTC),
        )
        DEAD_LETTERED.labels(kind).inc()
        await self.send(self.dlq, None, letter.value, letter.headers())


class ProfileStage:
    """Folds routed records into the profile table, one read and one write per customer per batch.

    ``bind(token)`` is called before each table write with the token of the last
    record that touched that customer; the Faust app uses it to set the current
    event, which decides the changelog partition of the write.
    """

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        sink: Sink[Profile],
        send: Send,
        *,
        by_customer: str,
        bind: Callable[[Any], None] | None = None,
        snapshots: str | None = None,
        scorer: Scorer | None = None,
        audience: AudienceRules | None = None,
        changes: str | None = None,
    ) -> None:
        self.table, self.sink, self.send, self.by_customer = table, sink, send, by_customer
        self.snapshots = snapshots  # topic for profile summaries (ClickHouse), if any
        self.bind = bind or (lambda _token: None)
        self.scorer = scorer  # models: learn from folded events, score changed profiles
        self.audience = audience  # ladder, tiers and segments, re-derived on every change
        self.changes = changes  # topic for audience transitions
        self.clock = 0  # event-time watermark: newest event time this stage folded
        self._cache: dict[str, Profile | None] = {}
        self._dirty: dict[str, Any] = {}
        self._replayed: set[str] = set()  # customers that saw a duplicate in this batch
        self._ticks: dict[str, int] = {}
        self._left: dict[str, Profile] = {}  # forgotten customers, for their segment exits

    def _get(self, cid: str) -> Profile | None:
        if cid not in self._cache:
            raw = self.table.get(cid.encode())
            self._cache[cid] = decode_profile(raw) if raw else None
        return self._cache[cid]

    def _put(self, profile: Profile, token: Any) -> None:
        self._cache[profile.customer_id] = profile
        self._dirty[profile.customer_id] = token

    async def handle(self, raw: bytes, token: Any = None) -> None:
        rec = routed_decoder.decode(raw)
        if isinstance(rec, RoutedEvent):
            await self._event(rec, token)
        elif isinstance(rec, MergeCommand):
            await self._merge(rec, token)
        elif isinstance(rec, Forget):
            self._forget(rec.customer_id, token)
        elif isinstance(rec, Tick):
            self._tick(rec, token)
        else:
            await self._absorb(rec, token)

    async def flush(self) -> None:
        """Write every changed profile to the table and the sink, then flush the sink."""
        for cid, token in self._dirty.items():
            profile = self._cache[cid]
            self.bind(token)
            if profile is None:  # forgotten
                self.table.pop(cid.encode(), None)
                self.sink.add(Profile(customer_id=cid, merged_into=FORGOTTEN))
                if self.snapshots:
                    await self.send(self.snapshots, cid.encode(), None, None)  # tombstone
                left = self._left.get(cid)
                if left is not None:
                    await self._emit(cid, leave(left, self._now(left), "forgotten"))
                continue
            if self.scorer is not None and not profile.merged_into:
                self.scorer.score(profile)
            changes = self._derive(profile)
            self.table[cid.encode()] = encode_profile(profile)
            self.sink.add(profile)
            if self.snapshots:
                summary = snapshot_encoder.encode(summarise(profile))
                await self.send(self.snapshots, cid.encode(), summary, None)
            await self._emit(cid, changes)
        self._dirty.clear()
        self._cache.clear()
        self._replayed.clear()
        self._ticks.clear()
        self._left.clear()
        await self.sink.flush()

    def _now(self, p: Profile) -> int:
        return max(self.clock, self._ticks.get(p.customer_id, 0), p.last_seen or 0)

    def _derive(self, p: Profile) -> list[Change]:
        """Audience transitions of a changed profile (re-sent ones after a replay)."""
        if self.audience is None:
            return []
        if p.merged_into:
            changes = leave(p, self._now(p), f"merged into {p.merged_into}")
        else:
            changes = apply(p, self.audience, self._now(p))
        if not changes and p.customer_id in self._replayed and p.audience is not None:
            # The first attempt may have died before its changes reached Kafka;
            # consumers drop the copies by change_id.
            changes = p.audience.changes
        return changes

    async def _emit(self, cid: str, changes: list[Change]) -> None:
        if not self.changes or not changes:
            return
        for change in changes:
            await self.send(self.changes, cid.encode(), encoder.encode(change), None)
        SEGMENT_CHANGES.inc(len(changes))

    async def process(self, values: list[bytes]) -> None:
        for raw in values:
            await self.handle(raw)
        await self.flush()

    async def _forward(self, key: str, record: RoutedEvent | Absorb) -> None:
        await self.send(self.by_customer, key.encode(), encoder.encode(record), None)

    async def _event(self, rec: RoutedEvent, token: Any) -> None:
        current = self._get(rec.customer_id)
        if current is not None and current.merged_into:
            if rec.event.message_id and rec.event.message_id in current.seen:
                # Already in the content this tombstone ships to the survivor (a replay
                # after a crash): forwarding it as well would count it twice there.
                return
            await self._forward(
                current.merged_into,
                RoutedEvent(customer_id=current.merged_into, event=rec.event, forwarded=True),
            )
            return
        profile = current or Profile(customer_id=rec.customer_id)
        t = event_time_ms(rec.event)
        if t > self.clock:
            self.clock = min(t, int(datetime.now(UTC).timestamp() * 1000) + CLOCK_LEAD_MS)
        rules = self.audience.loyalty.rules if self.audience is not None else DEFAULT_RULES
        if fold_into(profile, rec.event, rules):
            if self.scorer is not None:
                self.scorer.observe(profile, rec.event)
        else:
            self._replayed.add(rec.customer_id)
        # Put even a duplicate's unchanged profile: on a replay the previous attempt's
        # Redis write may be the part that was lost; the version guard drops it otherwise.
        self._put(profile, token)

    async def _merge(self, rec: MergeCommand, token: Any) -> None:
        current = self._get(rec.customer_id) or Profile(customer_id=rec.customer_id)
        content = msgspec.structs.replace(current, merged_into=None)
        absorb = Absorb(
            customer_id=rec.survivor,
            absorbed=rec.customer_id,
            merge_id=rec.merge_id,
            profile=content,
        )
        await self._forward(rec.survivor, absorb)
        # The tombstone keeps the content so a replayed command can ship it again; it is
        # put again on a replay too, in case the previous attempt's Redis write was lost.
        replayed = current.merged_into == rec.survivor
        if replayed:
            self._replayed.add(rec.customer_id)
        version = current.version if replayed else current.version + 1
        self._put(
            msgspec.structs.replace(current, merged_into=rec.survivor, version=version), token
        )

    def _forget(self, cid: str, token: Any) -> None:
        current = self._get(cid)
        if current is not None and current.audience is not None:
            self._left[cid] = current
        self._cache[cid] = None
        self._dirty[cid] = token

    def _tick(self, rec: Tick, token: Any) -> None:
        current = self._get(rec.customer_id)
        if current is None or current.merged_into:
            self.clock = max(self.clock, rec.at)
            return  # gone or absorbed: the survivor has its own timers
        self._ticks[rec.customer_id] = max(self._ticks.get(rec.customer_id, 0), rec.at)
        self.clock = max(self.clock, rec.at)  # the shared clock can be ahead of this worker's
        self._put(current, token)

    async def _absorb(self, rec: Absorb, token: Any) -> None:
        current = self._get(rec.customer_id) or Profile(customer_id=rec.customer_id)
        if current.merged_into:
            await self._forward(
                current.merged_into, msgspec.structs.replace(rec, customer_id=current.merged_into)
            )
            return
        if rec.merge_id in current.merges:
            self._replayed.add(rec.customer_id)
            self._put(current, token)  # replayed: re-emit, the earlier sink write may be lost
            return
        merge_into(current, msgspec.structs.replace(rec.profile, customer_id=rec.customer_id))
        current.merges = sorted({*current.merges, rec.merge_id})
        current.version += 1
        self._put(current, token)
