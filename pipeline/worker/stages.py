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
one customer (the assignment is remembered in Redis), so a replayed event lands
where it landed first and is dropped there as a duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime

import msgspec

from pipeline.events import Event
from pipeline.metrics import DEAD_LETTERED, EVENTS_OUT
from pipeline.sinks.base import Sink
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.transforms.dead_letter import DeadLetter
from pipeline.transforms.fold import fold, is_duplicate
from pipeline.transforms.identity import Decision
from pipeline.transforms.profile import Profile, combine
from pipeline.transforms.profile import decode as decode_profile
from pipeline.transforms.profile import encode as encode_profile
from pipeline.worker.records import (
    Absorb,
    IdentityDecision,
    MergeCommand,
    RoutedEvent,
    encoder,
    routed_decoder,
)

Send = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]] | None], Awaitable[None]]
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
            if d is not None:
                for absorbed, _via in d.merges:
                    cmd = MergeCommand(
                        customer_id=absorbed, survivor=cid, merge_id=f"{absorbed}>{cid}"
                    )
                    await self.send(self.by_customer, absorbed.encode(), encoder.encode(cmd), None)
        EVENTS_OUT.labels("by_customer").inc(len(events))

    async def _log(self, d: Decision, event_id: str, now: str) -> None:
        assert d.customer_id
        lines: list[IdentityDecision] = []
        if d.created:
            lines.append(
                IdentityDecision(
                    action="created", customer_id=d.customer_id, event_id=event_id, at=now
                )
            )
        for absorbed, via in d.merges:
            lines.append(
                IdentityDecision(
                    action="merged",
                    customer_id=d.customer_id,
                    event_id=event_id,
                    at=now,
                    absorbed=absorbed,
                    identifier=list(via),
                    reason=f"shared {via[0]}",
                )
            )
        for ident, previous in d.moves:
            lines.append(
                IdentityDecision(
                    action="moved",
                    customer_id=d.customer_id,
                    event_id=event_id,
                    at=now,
                    identifier=list(ident),
                    previous=previous,
                    reason="reassignable identifier used by another customer",
                )
            )
        for ident, reason in d.dropped:
            lines.append(
                IdentityDecision(
                    action="dropped",
                    customer_id=d.customer_id,
                    event_id=event_id,
                    at=now,
                    identifier=list(ident),
                    reason=reason,
                )
            )
        for line in lines:
            await self.send(self.merges, d.customer_id.encode(), encoder.encode(line), None)

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
    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        sink: Sink[Profile],
        send: Send,
        *,
        by_customer: str,
    ) -> None:
        self.table, self.sink, self.send, self.by_customer = table, sink, send, by_customer

    def _get(self, cid: str) -> Profile | None:
        raw = self.table.get(cid.encode())
        return decode_profile(raw) if raw else None

    def _put(self, profile: Profile) -> None:
        self.table[profile.customer_id.encode()] = encode_profile(profile)
        self.sink.add(profile)

    async def handle(self, raw: bytes) -> None:
        """Apply one record to the table (the caller sets Faust's current event)."""
        rec = routed_decoder.decode(raw)
        if isinstance(rec, RoutedEvent):
            await self._event(rec)
        elif isinstance(rec, MergeCommand):
            await self._merge(rec)
        else:
            await self._absorb(rec)

    async def flush(self) -> None:
        await self.sink.flush()

    async def process(self, values: list[bytes]) -> None:
        for raw in values:
            await self.handle(raw)
        await self.flush()

    async def _forward(self, key: str, record: RoutedEvent | Absorb) -> None:
        await self.send(self.by_customer, key.encode(), encoder.encode(record), None)

    async def _event(self, rec: RoutedEvent) -> None:
        current = self._get(rec.customer_id)
        if current is not None and current.merged_into:
            await self._forward(
                current.merged_into, RoutedEvent(customer_id=current.merged_into, event=rec.event)
            )
            return
        profile = current or Profile(customer_id=rec.customer_id)
        if is_duplicate(profile, rec.event):
            return
        self._put(fold(profile, rec.event))

    async def _merge(self, rec: MergeCommand) -> None:
        current = self._get(rec.customer_id) or Profile(customer_id=rec.customer_id)
        content = msgspec.structs.replace(current, merged_into=None)
        await self._forward(
            rec.survivor,
            Absorb(
                customer_id=rec.survivor,
                absorbed=rec.customer_id,
                merge_id=rec.merge_id,
                profile=content,
            ),
        )
        if current.merged_into != rec.survivor:
            # The tombstone keeps the content so a replayed command can ship it again.
            self._put(
                msgspec.structs.replace(
                    current, merged_into=rec.survivor, version=current.version + 1
                )
            )

    async def _absorb(self, rec: Absorb) -> None:
        current = self._get(rec.customer_id) or Profile(customer_id=rec.customer_id)
        if current.merged_into:
            await self._forward(
                current.merged_into, msgspec.structs.replace(rec, customer_id=current.merged_into)
            )
            return
        if rec.merge_id in current.merges:
            return
        merged = combine(current, msgspec.structs.replace(rec.profile, customer_id=rec.customer_id))
        self._put(
            msgspec.structs.replace(
                merged, merges=sorted({*merged.merges, rec.merge_id}), version=merged.version + 1
            )
        )
