"""Backfill parity and idempotence: the Beam pipeline over the archive agrees with the stream.

One workload goes through the live path (worker, ClickHouse sink, archive sink);
then ``crm backfill`` rebuilds profiles into another Redis prefix and events
into another ClickHouse store from the archive. Profiles (order-independent
fields, see tests/integration/profiles.py) and the daily aggregates must be
equal; a second backfill must change nothing. Finally ``crm replay`` re-publishes
the archive into the live pipeline and nothing is counted twice.
(tests/integration/test_backfill_flink.py runs the same comparison on portable runners.)
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from pipeline.config import Settings
from pipeline.kafka.inspect import end_offsets, group_lag
from tests.integration.backfill_parity import (
    aggregates,
    archived,
    assert_same_profiles,
    backfill_env,
    crm,
    live_workload,
)
from tests.integration.conftest import wait_until
from tests.integration.profiles import comparable, event_total, stored_profiles


def test_backfill_equals_stream_is_idempotent_and_replay_adds_nothing(
    settings: Settings, tmp_path: Path
):
    with ExitStack() as stack:
        live = live_workload(settings, tmp_path, stack)
        total, archive, stream_env = live.total, live.archive, live.env
        env, prefix = backfill_env(live, tmp_path, "bf")

        # --- backfill into fresh stores, twice --------------------------------------
        first = json.loads(crm(env, "backfill", "--archive", str(archive), "--json"))
        assert first["events_read"] == total
        assert first["clickhouse_rows_inserted"] == total
        backfill_aggregates = aggregates(env)
        assert backfill_aggregates == live.aggregates
        assert_same_profiles(settings, settings.topic_prefix, prefix)

        rebuilt = stored_profiles(settings, prefix)
        second = json.loads(crm(env, "backfill", "--archive", str(archive), "--json"))
        assert second.get("clickhouse_rows_inserted", 0) == 0
        assert second["clickhouse_rows_already_present"] == total
        assert second.get("redis_profiles_written", 0) == 0
        assert aggregates(env) == backfill_aggregates
        assert {c: comparable(p) for c, p in stored_profiles(settings, prefix).items()} == {
            c: comparable(p) for c, p in rebuilt.items()
        }

        # --- replay the archive into the live pipeline: nothing counted twice --------
        routed_topic = settings.topic("events.by_customer")
        routed_before = sum(end_offsets(settings, routed_topic).values())
        crm(stream_env, "replay", "--archive", str(archive), "--rate", "20000")
        wait_until(
            lambda: (
                (n := sum(end_offsets(settings, routed_topic).values()) - routed_before) >= total,
                n,
            ),
            120,
            "every replayed event routed by the identity stage",
        )
        sink_group = f"{settings.topic_prefix}crm-clickhouse"
        wait_until(
            lambda: ((n := group_lag(settings, sink_group, [routed_topic])) == 0, n),
            120,
            "ClickHouse sink caught up with the replay",
        )
        assert aggregates(stream_env) == live.aggregates
        assert event_total(settings, settings.topic_prefix) == total
        assert archived(archive) == total
