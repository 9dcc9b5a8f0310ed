"""The profile stage, independent of Faust so tests can drive it.

profile: events.by_customer -> fold into the profile state -> Redis, snapshots, audience.
(The identity stage before it is in ``identity_stage.py``.)

How merges stay exact across partitions: when customer B is absorbed by A, the
identity stage has already repointed B's identifiers to A, so new events go to
A. B's partition then receives a MergeCommand *after* every event already routed
to B (same key, same partition, in order); it folds those, ships B's profile to
A as an Absorb keyed by A, and keeps a tombstone that redirects any late event
for B to A. A applies each merge id once. A replayed event lands where it landed
first (the identity stage remembers assignments) and is dropped there as a duplicate.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline.events import Event
from pipeline.metrics import SEGMENT_CHANGES
from pipeline.models.scorer import Scorer
from pipeline.sinks.base import Sink
from pipeline.transforms.audience import AudienceRules, apply, leave
from pipeline.transforms.fold import DEFAULT_RULES, event_time_ms, fold_into
from pipeline.transforms.profile import Profile, merge_into
from pipeline.transforms.profile import decode as decode_profile
from pipeline.transforms.profile import encode as encode_profile
from pipeline.wire.change import Change
from pipeline.wire.keys import FORGOTTEN
from pipeline.wire.records import (
    Absorb,
    Forget,
    MergeCommand,
    RoutedEvent,
    Tick,
    encoder,
    routed_decoder,
)
from pipeline.worker.outputs import Outputs, dead_letter
from pipeline.worker.snapshot import snapshot_encoder, summarise
from pipeline.worker.state import (
    DAY_MS,
    KeyState,
    MappingState,
    decode_ids,
    encode_ids,
    profile_key,
    seen_key,
)

CLOCK_LEAD_MS = 5 * 60 * 1000  # an event stamped further ahead of the wall clock cannot
# drag the event-time clock (segment timers) into the future
DEDUPE_DAYS = 30  # event-time days of event ids kept per customer for deduplication
MAX_SEEN_DAYS = 32  # buckets beyond this are pruned to the DEDUPE_DAYS before the newest


class ProfileStage:
    """Folds routed records into the profile state, one read and one write per customer per batch.

    ``token`` is the Kafka message a record came from (None in unit tests): state
    writes go to its partition. Event ids already folded live in per-day buckets
    beside the profile (see ``pipeline.worker.state``), so the cost of a touch does
    not grow with the customer's history.
    """

    def __init__(
        self,
        table: KeyState | MutableMapping[bytes, bytes],
        sink: Sink[Profile],
        out: Outputs,
        *,
        by_customer: str,
        snapshots: str | None = None,
        scorer: Scorer | None = None,
        audience: AudienceRules | None = None,
        changes: str | None = None,
        dlq: str | None = None,
        keep: int = 0,
    ) -> None:
        self.state: KeyState = MappingState(table) if isinstance(table, MutableMapping) else table
        self.sink, self.out, self.by_customer = sink, out, by_customer
        self.snapshots = snapshots  # topic for profile summaries (ClickHouse), if any
        self.scorer = scorer  # models: learn from folded events, score changed profiles
        self.audience = audience  # ladder, tiers and segments, re-derived on every change
        self.changes = changes  # topic for audience transitions
        self.dlq = dlq  # topic for records this stage cannot decode (raised if None)
        self.clock = 0  # event-time watermark: newest event time this stage folded
        # Decoded profiles (and their dedupe buckets) kept between batches, up to ``keep``
        # customers: valid while this worker owns their partitions, so the worker calls
        # ``invalidate`` whenever partitions are revoked.
        self.keep = keep
        self._token: Any = None
        self._cache: dict[str, Profile | None] = {}
        self._dirty: dict[str, Any] = {}
        self._buckets: dict[tuple[str, int], set[str]] = {}
        self._new_ids: dict[str, set[int]] = {}  # customer -> days whose bucket grew
        self._changed: set[str] = set()  # customers whose content changed in this batch
        self._replayed: set[str] = set()  # customers that saw a duplicate in this batch
        self._ticks: dict[str, int] = {}
        self._left: dict[str, Profile] = {}  # forgotten customers, for their segment exits

    def _get(self, cid: str) -> Profile | None:
        if cid not in self._cache:
            raw = self.state.get(profile_key(cid), self._token)
            profile = self._cache[cid] = decode_profile(raw) if raw else None
            if profile is not None and profile.seen:  # stored before ids moved to buckets
                for eid, t in profile.seen.items():
                    self._bucket(cid, t // DAY_MS).add(eid)
                    self._new_ids.setdefault(cid, set()).add(t // DAY_MS)
        return self._cache[cid]

    def _bucket(self, cid: str, day: int) -> set[str]:
        ids = self._buckets.get((cid, day))
        if ids is None:
            ids = self._buckets[(cid, day)] = decode_ids(
                self.state.get(seen_key(cid, day), self._token)
            )
        return ids

    def _seen(self, cid: str, event: Event) -> bool:
        eid = event.message_id
        return bool(eid) and eid in self._bucket(cid, event_time_ms(event) // DAY_MS)

    def _remember(self, cid: str, event: Event) -> None:
        if event.message_id:
            day = event_time_ms(event) // DAY_MS
            self._bucket(cid, day).add(event.message_id)
            self._new_ids.setdefault(cid, set()).add(day)

    def _put(self, profile: Profile, token: Any) -> None:
        self._cache[profile.customer_id] = profile
        self._dirty[profile.customer_id] = token

    async def handle(self, raw: bytes, token: Any = None) -> None:
        try:
            rec = routed_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if self.dlq is None:
                raise
            # One poison record (another version's format, a hand-made message) must not
            # stop the partition: it goes to the dead letters with the reason.
            reason = f"undecodable record on {self.by_customer}: {exc}"
            dead_letter(self.out, self.dlq, raw, reason, "schema", "worker:profile")
            return
        self._token = token  # state reads go to this record's partition
        if isinstance(rec, RoutedEvent):
            self._event(rec, token)
        elif isinstance(rec, MergeCommand):
            self._merge(rec, token)
        elif isinstance(rec, Forget):
            self._forget(rec.customer_id, token)
        elif isinstance(rec, Tick):
            self._tick(rec, token)
        elif isinstance(rec, Absorb):
            self._absorb(rec, token)
        else:  # pragma: no cover - the decoder only yields the union's members
            raise TypeError(f"unknown routed record {type(rec).__name__}")

    async def flush(self) -> None:
        """Write every changed profile (buckets first) to the state and the sink."""
        for cid, token in self._dirty.items():
            profile = self._cache[cid]
            if profile is None:  # forgotten
                self._erase(cid, token)
                continue
            self._write_buckets(profile, token)
            if (
                self.scorer is not None
                and not profile.merged_into
                and (cid in self._changed or cid not in self._replayed)
            ):
                self.scorer.score(profile)
            changes = self._derive(profile)
            stored = msgspec.structs.replace(profile, seen={}) if profile.seen else profile
            self.state.put(profile_key(cid), encode_profile(stored), token)
            self.sink.add(profile)
            if self.snapshots:
                summary = snapshot_encoder.encode(summarise(profile))
                self.out.send(self.snapshots, cid.encode(), summary)
            self._emit(cid, changes)
        self._dirty.clear()
        if len(self._cache) > self.keep or len(self._buckets) > 4 * self.keep:
            self.invalidate()
        self._new_ids.clear()
        self._changed.clear()
        self._replayed.clear()
        self._ticks.clear()
        self._left.clear()
        await self.sink.flush()

    def invalidate(self) -> None:
        """Forget the decoded profiles kept between batches (partitions were revoked)."""
        self._cache.clear()
        self._buckets.clear()

    def _write_buckets(self, profile: Profile, token: Any) -> None:
        cid = profile.customer_id
        grown = self._new_ids.get(cid)
        if not grown:
            return
        days = sorted({*profile.seen_days, *grown})
        if len(days) > MAX_SEEN_DAYS:  # prune like the old window: keep DEDUPE_DAYS of days
            keep = [d for d in days if d >= days[-1] - DEDUPE_DAYS]
            for day in set(days) - set(keep):
                self._drop_bucket(cid, day, token)
                grown.discard(day)
            days = keep
        for day in sorted(grown):
            self.state.put(seen_key(cid, day), encode_ids(self._bucket(cid, day)), token)
        profile.seen_days = days

    def _drop_bucket(self, cid: str, day: int, token: Any) -> None:
        self.state.delete(seen_key(cid, day), token)
        self._buckets.pop((cid, day), None)

    def _erase(self, cid: str, token: Any) -> None:
        left = self._left.get(cid)
        for day in left.seen_days if left is not None else []:
            self._drop_bucket(cid, day, token)
        for day in self._new_ids.get(cid, ()):  # folded in this batch, never written
            self._buckets.pop((cid, day), None)
        self.state.delete(profile_key(cid), token)
        self.sink.add(Profile(customer_id=cid, merged_into=FORGOTTEN))
        if self.snapshots:
            self.out.send(self.snapshots, cid.encode(), None)  # tombstone
        if left is not None and left.audience is not None:
            self._emit(cid, leave(left, self._now(left), "forgotten"))

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

    def _emit(self, cid: str, changes: list[Change]) -> None:
        if not self.changes or not changes:
            return
        for change in changes:
            self.out.send(self.changes, cid.encode(), encoder.encode(change))
        SEGMENT_CHANGES.inc(len(changes))

    async def process(self, values: list[bytes]) -> None:
        for raw in values:
            await self.handle(raw)
        await self.flush()
        await self.out.confirm()

    def _forward(self, key: str, record: RoutedEvent | Absorb) -> None:
        self.out.send(self.by_customer, key.encode(), encoder.encode(record))

    def _event(self, rec: RoutedEvent, token: Any) -> None:
        cid = rec.customer_id
        current = self._get(cid)
        if current is not None and current.merged_into:
            if self._seen(cid, rec.event):
                # Already in the content this tombstone ships to the survivor (a replay
                # after a crash): forwarding it as well would count it twice there.
                return
            self._forward(
                current.merged_into,
                RoutedEvent(customer_id=current.merged_into, event=rec.event, forwarded=True),
            )
            return
        profile = current or Profile(customer_id=cid)
        t = event_time_ms(rec.event)
        if t > self.clock:
            self.clock = min(t, int(datetime.now(UTC).timestamp() * 1000) + CLOCK_LEAD_MS)
        rules = self.audience.loyalty.rules if self.audience is not None else DEFAULT_RULES
        if not self._seen(cid, rec.event) and fold_into(profile, rec.event, rules):
            self._remember(cid, rec.event)
            self._changed.add(cid)
            if self.scorer is not None:
                self.scorer.observe(profile, rec.event)
        else:
            self._replayed.add(cid)
        # Put even a duplicate's unchanged profile: on a replay the previous attempt's
        # Redis write may be the part that was lost; the version guard drops it otherwise.
        self._put(profile, token)

    def _merge(self, rec: MergeCommand, token: Any) -> None:
        current = self._get(rec.customer_id) or Profile(customer_id=rec.customer_id)
        # The survivor inherits the absorbed customer's event ids: a very late copy of one
        # of them (its identity assignment expired) then reaches the survivor as a duplicate.
        seen = {
            eid: day * DAY_MS
            for day in {*current.seen_days, *self._new_ids.get(rec.customer_id, ())}
            for eid in self._bucket(rec.customer_id, day)
        }
        content = msgspec.structs.replace(current, merged_into=None, seen=seen, seen_days=[])
        absorb = Absorb(
            customer_id=rec.survivor,
            absorbed=rec.customer_id,
            merge_id=rec.merge_id,
            profile=content,
        )
        self._forward(rec.survivor, absorb)
        # The tombstone keeps the content so a replayed command can ship it again; it is
        # put again on a replay too, in case the previous attempt's Redis write was lost.
        replayed = current.merged_into == rec.survivor
        if replayed:
            self._replayed.add(rec.customer_id)
        else:
            self._changed.add(rec.customer_id)
        version = current.version if replayed else current.version + 1
        self._put(
            msgspec.structs.replace(current, merged_into=rec.survivor, version=version), token
        )

    def _forget(self, cid: str, token: Any) -> None:
        current = self._get(cid)
        if current is not None:
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
        self._changed.add(rec.customer_id)  # time moved: scores and timed segments may too
        self._put(current, token)

    def _absorb(self, rec: Absorb, token: Any) -> None:
        current = self._get(rec.customer_id) or Profile(customer_id=rec.customer_id)
        if current.merged_into:
            self._forward(
                current.merged_into, msgspec.structs.replace(rec, customer_id=current.merged_into)
            )
            return
        if rec.merge_id in current.merges:
            self._replayed.add(rec.customer_id)
            self._put(current, token)  # replayed: re-emit, the earlier sink write may be lost
            return
        merge_into(current, msgspec.structs.replace(rec.profile, customer_id=rec.customer_id))
        for eid, t in rec.profile.seen.items():
            self._bucket(rec.customer_id, t // DAY_MS).add(eid)
            self._new_ids.setdefault(rec.customer_id, set()).add(t // DAY_MS)
        current.merges = sorted({*current.merges, rec.merge_id})
        current.version += 1
        self._changed.add(rec.customer_id)
        self._put(current, token)
