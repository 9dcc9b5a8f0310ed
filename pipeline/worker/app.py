"""The Faust application: topics, the profile table, and two stage loops.

Each loop takes a batch of records from its topic's intake (``intake.py``: Faust's
consumer fetches, assigns and commits; records skip its per-record stream machinery)
and acknowledges each record only after the stage finished and its outputs were
confirmed by the broker, so a crash replays at most the unacknowledged tail and the
stages make replays harmless. Exactly-once mode and windowed tables are not used
(known correctness bugs; see DESIGN.md).
"""

from __future__ import annotations

import asyncio
import shutil
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import TP

from pipeline.config import Settings
from pipeline.kafka.producer import ConfirmedProducer
from pipeline.kafka.topics import replica_config
from pipeline.logs import get_logger
from pipeline.models.host import ModelHost
from pipeline.rule_files import load_identity_rules, load_loyalty, load_segments
from pipeline.rules_file import ReloadingFile
from pipeline.sinks.redis_profiles import RedisProfileSink
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.stores.redis_client import async_redis
from pipeline.stores.segments_redis import SegmentTimers
from pipeline.transforms.audience import AudienceRules
from pipeline.wire.records import Tick, encoder
from pipeline.worker.identity_stage import IdentityStage
from pipeline.worker.intake import Intake
from pipeline.worker.intake import install as install_intake
from pipeline.worker.outputs import KafkaOutputs
from pipeline.worker.retry import OUTAGES, until_done
from pipeline.worker.stages import ProfileStage
from pipeline.worker.state import TableState

log = get_logger("worker")


class _Current:
    """What Faust's ``current_event()`` readers use of an event: its message."""

    def __init__(self, message: Any) -> None:
        self.message = message


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.table_store,
        datadir=str(settings.data_dir / "faust" / settings.worker_id / settings.worker_name),
        topic_partitions=settings.topic_partitions,
        # Faust's own topics (table changelogs, the assignor's leader topic) replicate
        # like ours; the changelog's min.insync.replicas is set on the table below.
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        table_standby_replicas=0,
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    # Every start restores the profile table from its changelog, never from the local
    # store a previous process left: TableState writes RocksDB at once and the changelog
    # record through librdkafka, so a worker killed (or stopped: nothing flushes that
    # producer at exit) before those records were stored leaves local writes the changelog
    # never got. Restarted with the same --name it would then drop an event of the
    # uncommitted tail it replays as a duplicate (its id already in a local seen bucket)
    # although the profile never counted it (tests/integration/test_worker_churn.py).
    shutil.rmtree(app.conf.tabledir, ignore_errors=True)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    # The two input topics reach the stages in bulk (pipeline/worker/intake.py); Faust
    # subscribes to them, assigns their partitions, commits what the stages acknowledge.
    events_name, by_customer_name = settings.topic("events"), settings.topic("events.by_customer")
    intakes = {name: Intake(settings.worker_intake) for name in (events_name, by_customer_name)}
    install_intake(app, intakes)
    for name in intakes:
        app.topics.add(app.topic(name, **raw))
    profiles = app.Table(
        "profiles",
        default=None,
        partitions=settings.topic_partitions,
        use_partitioner=True,
        extra_topic_configs=replica_config(settings),
        key_type=bytes,
        value_type=bytes,
        # Faust opens every partition's RocksDB with a 2 GB block cache and 3 x 64 MB of
        # write buffers: a worker's memory then grows for as long as it runs. Bounded here:
        # per partition about cache + 2 x write buffer.
        options={
            "block_cache_size": settings.table_cache_mb * 1024**2,
            "block_cache_compressed_size": 0,
            "write_buffer_size": settings.table_write_buffer_mb * 1024**2,
            "max_write_buffer_number": 2,
        },
    )
    # Every record a stage writes (routed events, merge log, dead letters, snapshots,
    # audience changes, the profile table's changelog) goes through one librdkafka
    # producer; each agent confirms its own outputs before acknowledging its input.
    # No delivery timeout: while the broker is away the stages wait (outputs unconfirmed,
    # inputs unacknowledged) and carry on when it is back, instead of crashing the worker.
    producer = ConfirmedProducer(
        settings.kafka_bootstrap,
        ack_timeout_ms=0,
        extra={"linger.ms": 2, "compression.type": "none"},
    )
    changelog = profiles.changelog_topic.get_topic_name()
    identity_out = KafkaOutputs(producer)
    profile_out = KafkaOutputs(producer, track=frozenset({changelog}))
    timer_out = KafkaOutputs(producer)

    redis = async_redis(settings)
    rules = load_identity_rules(
        settings.identity_rules, settings.pii_salt.get_secret_value(), settings.hash_pii
    )
    identity_stage = IdentityStage(
        RedisIdentityGraph(redis, settings.redis_prefix, rules),
        identity_out,
        by_customer=settings.topic("events.by_customer"),
        merges=settings.topic("identity.merges"),
        dlq=settings.topic("events.dlq"),
    )

    def bind(record: Any) -> None:
        # Faust's table store looks up partitions through the current event.
        _current_event.set(weakref.ref(_Current(record)))  # type: ignore[arg-type]

    models = ModelHost(settings)
    # Segment definitions reload while running (an invalid edit keeps the old ones);
    # loyalty accrual is read at start only, so points never depend on when a file changed.
    segments = ReloadingFile(settings.segments_rules, load_segments, settings.rules_reload_s)
    profile_stage = ProfileStage(
        TableState(lambda: profiles.data, changelog, profile_out, bind),
        RedisProfileSink(redis, settings.redis_prefix),
        profile_out,
        by_customer=settings.topic("events.by_customer"),
        snapshots=settings.topic("profiles"),
        scorer=models.scorer,
        audience=AudienceRules(
            loyalty=load_loyalty(settings.loyalty_rules), segments=segments.value
        ),
        changes=settings.topic("segments.changes"),
        dlq=settings.topic("events.dlq"),
        keep=settings.worker_cache,
    )

    rebalances = [0]

    async def rebalanced(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Profiles kept between batches are only valid while this worker owns them.
        profile_stage.invalidate()
        rebalances[0] += 1

    app.on_partitions_revoked.connect(rebalanced)
    app.on_partitions_assigned.connect(rebalanced)
    timers = SegmentTimers(redis, settings.redis_prefix)

    async def acknowledge(
        batch: list[Any], stored: Future[dict[tuple[str, int], int]]
    ) -> dict[tuple[str, int], int]:
        written = await asyncio.wrap_future(stored)
        ack = app.consumer.ack
        for record in batch:
            ack(record)
        return written

    async def batches(name: str) -> AsyncIterator[list[Any]]:
        intake = intakes[name]
        while True:
            batch = await intake.take(settings.worker_batch)
            taken_in = rebalances[0]
            await app.flow_control.acquire()  # wait out a rebalance in progress
            if rebalances[0] != taken_in or not app.flow_control.is_active():
                # Taken before a rebalance: Faust seeks every partition it assigns back to
                # its committed offset, so these records come again if they are still ours.
                continue
            yield batch

    # Each loop overlaps the broker's acknowledgement of one batch's outputs with the
    # processing of the next: the batch's input offsets are acknowledged only once its
    # outputs are stored, and at most one batch is in flight (a failed send crashes the
    # worker before anything after it is acknowledged; a restart replays the tail).

    @app.task
    async def identity() -> None:
        in_flight: asyncio.Task[Any] | None = None
        async for batch in batches(events_name):
            # Redis away: the batch runs again once it is back (assignments make it idempotent).
            step = partial(identity_stage.process, [r.value for r in batch])
            await until_done("identity", step, before_retry=identity_out.discard)
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.ensure_future(acknowledge(batch, identity_out.submit()))

    @app.task
    async def profile() -> None:
        in_flight: asyncio.Task[dict[tuple[str, int], int]] | None = None
        async for batch in batches(by_customer_name):
            for record in batch:
                bind(record)  # reads of the table also consult the current record
                await profile_stage.handle(record.value, record)
            try:
                await profile_stage.flush()
            except OUTAGES:  # everything but the Redis write is done; it is kept and retried
                await until_done("redis profiles", profile_stage.sink.flush, first_delay_s=0)
            if in_flight is not None:
                persisted(await in_flight)
            in_flight = asyncio.ensure_future(acknowledge(batch, profile_out.submit()))
            models.processed(batch)

    def persisted(written: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in written.items():
            # What Faust's own changelog callback records: recovery after a restart
            # reads the changelog from here, not from the start.
            profiles.data.set_persisted_offset(TP(topic, partition), offset)  # type: ignore[attr-defined]

    @app.timer(interval=settings.segment_tick_s)
    async def segment_timers() -> None:
        try:
            await fire_timers()
        except OUTAGES as exc:  # the next tick tries again
            log.warning("segment timers skipped a tick", error=f"{type(exc).__name__}: {exc}")

    async def fire_timers() -> None:
        # Event time: "no purchase for 60 days" fires when the stream's clock passes it.
        now = await timers.advance_clock(profile_stage.clock)
        if now <= 0:
            return
        for cid in await timers.claim_due(now):
            timer_out.send(
                settings.topic("events.by_customer"),
                cid.encode(),
                encoder.encode(Tick(customer_id=cid, at=now)),
            )
        await timer_out.confirm()

    @app.timer(interval=settings.rules_reload_s)
    async def reload_segments() -> None:
        if segments.refresh() and profile_stage.audience is not None:
            profile_stage.audience = replace(profile_stage.audience, segments=segments.value)

    @app.timer(interval=settings.model_checkpoint_s)
    async def checkpoint_models() -> None:
        models.checkpoint()

    return app
