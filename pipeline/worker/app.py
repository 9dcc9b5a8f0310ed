"""The Faust application: topics, the profile table, and two agents that call the stages.

Agents take batches with ``noack_take`` and acknowledge each record only after
the stage finished and its sinks flushed; Faust flushes its producer before it
commits offsets, so a crash replays at most the unacknowledged tail and the
stages make replays harmless. Exactly-once mode and windowed tables are not used
(known correctness bugs; see DESIGN.md).
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.streams import _current_event
from faust.transport.producer import ProducerBuffer

from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.models.host import ModelHost
from pipeline.rules_file import ReloadingFile
from pipeline.sinks.redis_profiles import RedisProfileSink
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.stores.segments_redis import SegmentTimers
from pipeline.transforms.audience import AudienceRules
from pipeline.transforms.identity import load_rules
from pipeline.transforms.loyalty import load_loyalty
from pipeline.transforms.segments import load_segments
from pipeline.worker.records import Tick, encoder
from pipeline.worker.stages import IdentityStage, ProfileStage

log = get_logger("worker")


def create_app(settings: Settings) -> faust.App:
    # Faust forces a producer flush (and logs a warning) every 100 buffered sends;
    # our batches send thousands, so let librdkafka-style batching do its job.
    ProducerBuffer.max_messages = 20_000
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.table_store,
        datadir=str(settings.data_dir / "faust" / settings.worker_id / settings.worker_name),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        table_standby_replicas=0,
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    events = app.topic(settings.topic("events"), **raw)
    by_customer = app.topic(settings.topic("events.by_customer"), **raw)
    profiles = app.Table(
        "profiles",
        default=None,
        partitions=settings.topic_partitions,
        use_partitioner=True,
        key_type=bytes,
        value_type=bytes,
    )
    topics = {
        settings.topic("events.by_customer"): by_customer,
        settings.topic("identity.merges"): app.topic(settings.topic("identity.merges"), **raw),
        settings.topic("events.dlq"): app.topic(settings.topic("events.dlq"), **raw),
        settings.topic("profiles"): app.topic(settings.topic("profiles"), **raw),
        settings.topic("segments.changes"): app.topic(settings.topic("segments.changes"), **raw),
    }

    async def send(
        topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None
    ) -> None:
        await topics[topic].send(key=key, value=value, headers=headers)

    redis = aioredis.Redis.from_url(settings.redis_url)
    rules = load_rules(settings.identity_rules)
    identity_stage = IdentityStage(
        RedisIdentityGraph(redis, settings.redis_prefix, rules),
        send,
        by_customer=settings.topic("events.by_customer"),
        merges=settings.topic("identity.merges"),
        dlq=settings.topic("events.dlq"),
    )

    def bind(event: Any) -> None:
        # Table writes go to the changelog partition of the current event.
        _current_event.set(weakref.ref(event))

    models = ModelHost(settings)
    # Segment definitions reload while running (an invalid edit keeps the old ones);
    # loyalty accrual is read at start only, so points never depend on when a file changed.
    segments = ReloadingFile(settings.segments_rules, load_segments, settings.rules_reload_s)
    profile_stage = ProfileStage(
        profiles,
        RedisProfileSink(redis, settings.redis_prefix),
        send,
        by_customer=settings.topic("events.by_customer"),
        bind=bind,
        snapshots=settings.topic("profiles"),
        scorer=models.scorer,
        audience=AudienceRules(
            loyalty=load_loyalty(settings.loyalty_rules), segments=segments.value
        ),
        changes=settings.topic("segments.changes"),
    )
    timers = SegmentTimers(redis, settings.redis_prefix)
    within = settings.worker_batch_ms / 1000

    @app.agent(events)
    async def identity(stream: Any) -> None:
        async for batch in stream.noack_take(settings.worker_batch, within=within):
            await identity_stage.process([e.value for e in batch])
            for event in batch:
                await stream.ack(event)

    @app.agent(by_customer)
    async def profile(stream: Any) -> None:
        async for batch in stream.noack_take(settings.worker_batch, within=within):
            for event in batch:
                bind(event)  # reads of the table also consult the current event
                await profile_stage.handle(event.value, event)
            await profile_stage.flush()
            for event in batch:
                await stream.ack(event)
            models.processed(batch)

    @app.timer(interval=settings.segment_tick_s)
    async def segment_timers() -> None:
        # Event time: "no purchase for 60 days" fires when the stream's clock passes it.
        now = await timers.advance_clock(profile_stage.clock)
        if now <= 0:
            return
        for cid in await timers.claim_due(now):
            await by_customer.send(
                key=cid.encode(), value=encoder.encode(Tick(customer_id=cid, at=now))
            )

    @app.timer(interval=settings.rules_reload_s)
    async def reload_segments() -> None:
        if segments.refresh() and profile_stage.audience is not None:
            profile_stage.audience = replace(profile_stage.audience, segments=segments.value)

    @app.timer(interval=settings.model_checkpoint_s)
    async def checkpoint_models() -> None:
        models.checkpoint()

    return app
