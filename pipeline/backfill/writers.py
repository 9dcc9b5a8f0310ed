"""Idempotent writes of a backfill: Redis profiles by version, ClickHouse rows by event id.

Running the same backfill twice must change nothing:

* Redis: profiles go through the same version-guarded script as the streaming
  sink (a write with a version not above the stored one is a no-op); identifier
  index keys are only created, never repointed, so the live graph keeps
  authority over identifiers it already owns;
* ClickHouse: before inserting, the rows whose event id is already in ``events``
  are dropped (whether the stream or an earlier backfill wrote them), and each
  insert carries a deduplication token over its event ids, so a retried insert
  after a crash is dropped by ClickHouse too, materialized views included.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import cast

import apache_beam as beam
import msgspec
import redis
from apache_beam.metrics import Metrics
from clickhouse_connect.driver.client import Client

from pipeline.events import Event
from pipeline.sinks.clickhouse.client import connect
from pipeline.sinks.clickhouse.rows import EVENT_COLUMNS, MERGE_COLUMNS, event_row
from pipeline.sinks.redis_profiles import WRITE_IF_NEWER, write_args
from pipeline.transforms.profile import Profile
from pipeline.transforms.profile import decode as decode_profile
from pipeline.wire.keys import SEP, RedisKeys

INSERT_CHUNK = 10_000
_event_decoder = msgspec.json.Decoder(Event)
_clients: dict[str, Client] = {}
# A client runs one query at a time (a session); the SDK harness of a portable runner
# may process bundles on several threads of one process.
_client_lock = threading.Lock()


def clickhouse(dsn: str) -> Client:
    """One client per process and DSN: the embedded engine allows one session per process."""
    with _client_lock:
        if dsn not in _clients:
            _clients[dsn] = connect(dsn)
        return _clients[dsn]


def _redis(url: str, cluster: bool) -> redis.Redis:
    if cluster:
        return cast(redis.Redis, redis.RedisCluster.from_url(url))
    return redis.Redis.from_url(url)


class WriteProfiles(beam.DoFn):
    """Batches of (profile JSON) -> Redis, version-guarded, with identifier index keys."""

    def __init__(self, redis_url: str, prefix: str, cluster: bool = False) -> None:
        self.redis_url, self.prefix, self.cluster = redis_url, prefix, cluster
        self.keys = RedisKeys(prefix)
        self.written = Metrics.counter("backfill", "redis_profiles_written")
        self.unchanged = Metrics.counter("backfill", "redis_profiles_unchanged")

    def setup(self) -> None:
        self.r = _redis(self.redis_url, self.cluster)
        self.script = self.r.register_script(WRITE_IF_NEWER)

    def process(self, batch: list[tuple[bytes, list[tuple[str, str]]]]) -> Iterator[int]:
        now = str(int(time.time() * 1000))
        pipe = self.r.pipeline(transaction=False)
        direct: list[int] = []  # a cluster client cannot pipeline scripts: called one by one
        for raw, members in batch:
            p = decode_profile(raw)
            keys, args = write_args(self.prefix, p, now, audience=False)
            if self.cluster:
                direct.append(int(self.script(keys=keys, args=args)))
            else:
                self.script(keys=keys, args=args, client=pipe)
            for kind, value in members:
                pipe.set(self.keys.identifier(kind, value), p.customer_id, nx=True)
                pipe.sadd(self.keys.members(p.customer_id), f"{kind}{SEP}{value}")
        results = pipe.execute()
        writes = sum(int(r == 1) for r in direct)
        i = 0
        for _raw, members in batch if not self.cluster else []:
            writes += int(results[i] == 1)
            i += 1 + 2 * len(members)
        self.written.inc(writes)
        self.unchanged.inc(len(batch) - writes)
        yield writes


class WriteTombstones(beam.DoFn):
    """Absorbed customers point to their survivor, like the streaming sink's tombstones."""

    def __init__(self, redis_url: str, prefix: str, cluster: bool = False) -> None:
        self.redis_url, self.prefix, self.cluster = redis_url, prefix, cluster
        self.keys = RedisKeys(prefix)

    def setup(self) -> None:
        self.r = _redis(self.redis_url, self.cluster)
        self.script = self.r.register_script(WRITE_IF_NEWER)

    def process(self, batch: list[tuple[str, str]]) -> Iterator[int]:
        now = str(int(time.time() * 1000))
        pipe = self.r.pipeline(transaction=False)
        for absorbed, survivor in batch:
            # Version 1: any profile the stream wrote for this customer is at least as new.
            tombstone = Profile(customer_id=absorbed, version=1, merged_into=survivor)
            keys, args = write_args(self.prefix, tombstone, now)
            if self.cluster:
                self.script(keys=keys, args=args)
            else:
                self.script(keys=keys, args=args, client=pipe)
            pipe.set(self.keys.merged_into(absorbed), survivor, nx=True)
        pipe.execute()
        yield len(batch)


def insert_token(table: str, ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
    return f"backfill:{table}:{digest}"


class WriteEventRows(beam.DoFn):
    """(day/bucket, rows) -> ClickHouse ``events`` (and through the views, the aggregates)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.inserted = Metrics.counter("backfill", "clickhouse_rows_inserted")
        self.present = Metrics.counter("backfill", "clickhouse_rows_already_present")

    def process(self, element: tuple[str, Iterable[tuple[bytes, str]]]) -> Iterator[int]:
        _key, routed = element
        rows = [event_row(_event_decoder.decode(raw), cid, 0, 0) for raw, cid in routed]
        rows.sort(key=lambda r: r[0])  # by event id: the same chunks on every run
        client = clickhouse(self.dsn)
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            ids = [r[0] for r in chunk]
            with _client_lock:
                existing = {
                    row[0]
                    for row in client.query(
                        "SELECT DISTINCT event_id FROM events WHERE event_id IN %(ids)s",
                        parameters={"ids": ids},
                    ).result_rows
                }
                fresh = [r for r in chunk if r[0] not in existing]
                if fresh:
                    client.insert(
                        "events",
                        fresh,
                        column_names=EVENT_COLUMNS,
                        settings={
                            "insert_deduplication_token": insert_token(
                                "events", [r[0] for r in fresh]
                            ),
                            "deduplicate_blocks_in_dependent_materialized_views": 1,
                        },
                    )
            self.present.inc(len(chunk) - len(fresh))
            self.inserted.inc(len(fresh))
            yield len(fresh)


class WriteMergeRows(beam.DoFn):
    """Identity merges to ``customer_merges`` so ``events_resolved`` sees today's customers."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def process(self, batch: list[tuple[str, str, datetime, str]]) -> Iterator[int]:
        client = clickhouse(self.dsn)
        rows = sorted(batch)
        with _client_lock:
            existing = {
                (row[0], row[1])
                for row in client.query(
                    "SELECT absorbed, survivor FROM customer_merges WHERE absorbed IN %(ids)s",
                    parameters={"ids": [r[0] for r in rows]},
                ).result_rows
            }
            fresh = [r for r in rows if (r[0], r[1]) not in existing]
            if fresh:
                client.insert(
                    "customer_merges",
                    [list(r) for r in fresh],
                    column_names=MERGE_COLUMNS,
                    settings={
                        "insert_deduplication_token": insert_token("merges", map(str, fresh))
                    },
                )
        yield len(fresh)
