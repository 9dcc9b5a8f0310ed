"""The identity stage: events (keyed by strongest identifier) -> resolve against the shared
identity graph -> events.by_customer (keyed by customer id) + merge log.

Every event id is assigned to exactly one customer (the assignment is remembered in Redis
for ``CRM_DEDUPE_WINDOW_S``, in the same transaction as the graph change it caused), so an
event replayed within that window lands where it landed first and re-sends its merge
commands; the profile stage drops it as a duplicate. Replayed later, it is resolved again
and lands with the customer its identifiers belong to by then (README, "Redis memory").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.events import Event
from pipeline.metrics import EVENTS_OUT
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.transforms.identity import Decision
from pipeline.wire.records import IdentityDecision, MergeCommand, RoutedEvent, encoder
from pipeline.worker.outputs import Outputs, dead_letter

_event_decoder = msgspec.json.Decoder(Event)


class IdentityStage:
    def __init__(
        self, graph: RedisIdentityGraph, out: Outputs, *, by_customer: str, merges: str, dlq: str
    ) -> None:
        self.graph, self.out = graph, out
        self.by_customer, self.merges, self.dlq = by_customer, merges, dlq

    async def process(self, values: list[bytes]) -> None:
        events: list[Event] = []
        for raw in values:
            try:
                events.append(_event_decoder.decode(raw))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._dead_letter(raw, f"undecodable event on the events topic: {exc}", "schema")
        resolutions = await self.graph.resolve_batch(
            [(e.message_id or "", e.identities) for e in events]
        )
        now = datetime.now(UTC).isoformat()
        routed: set[str] = set()  # event ids routed by this batch: a second copy is a repeat
        for event, res in zip(events, resolutions, strict=True):
            if res.customer_id is None:
                self._dead_letter(
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
                self._log(d, event.message_id or "", now)
            cid = res.customer_id
            event_id = event.message_id or ""
            repeat = bool(event_id) and (res.replayed or event_id in routed)
            routed.add(event_id)
            self.out.send(
                self.by_customer,
                cid.encode(),
                encoder.encode(RoutedEvent(customer_id=cid, event=event, repeat=repeat)),
            )
            # On replay the merges come from Redis: the first attempt may have died
            # after changing the graph and before its merge commands reached Kafka.
            absorbed_ids = [m for m, _ in d.merges] if d is not None else res.replayed_merges
            for absorbed in absorbed_ids:
                cmd = MergeCommand(customer_id=absorbed, survivor=cid, merge_id=f"{absorbed}>{cid}")
                self.out.send(self.by_customer, absorbed.encode(), encoder.encode(cmd))
        EVENTS_OUT.labels("kafka", "events.by_customer").inc(len(events))

    def _log(self, d: Decision, event_id: str, now: str) -> None:
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
            self.out.send(self.merges, cid.encode(), encoder.encode(entry))

    def _dead_letter(self, raw: bytes, reason: str, kind: str) -> None:
        dead_letter(self.out, self.dlq, raw, reason, kind, "worker:identity")
