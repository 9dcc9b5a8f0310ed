"""`crm bench` drops benchmark runs' topics, Redis keys and local state, and nothing else
(real Kafka and Redis)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.bench.cleanup import bench_stores, drop_bench_data, new_tag
from pipeline.config import Settings
from pipeline.kafka.topics import admin, ensure_topics
from pipeline.stores.redis_client import sync_redis


def _topics(settings: Settings) -> set[str]:
    return set(admin(settings).list_topics(timeout=10).topics)


def _run_state(settings: Settings, tag: str) -> dict[str, Path | list[str] | str]:
    """What a benchmark run under ``tag`` leaves: topics, keys, store, table, intent file."""
    run = settings.model_copy(update={"topic_prefix": f"{tag}.", "topic_partitions": 1})
    topics = ensure_topics(run)
    sync_redis(settings).set(f"{tag}.{{g}}:id:user_id:u1", "c_1")
    store = bench_stores(settings) / tag
    (store / "store").mkdir(parents=True)
    table = settings.data_dir / "faust" / tag / "w1"
    table.mkdir(parents=True)
    intent = settings.data_dir / "sinks" / f"{tag}.clickhouse-intent.json"
    intent.parent.mkdir(exist_ok=True)
    intent.write_text("{}")
    return {"topics": topics, "key": f"{tag}.{{g}}:id:user_id:u1", "store": store,
            "table": table.parent, "intent": intent}  # fmt: skip


def _gone(settings: Settings, state: dict[str, Path | list[str] | str]) -> bool:
    deadline = time.monotonic() + 30  # topic deletion completes asynchronously
    while set(state["topics"]) & _topics(settings) and time.monotonic() < deadline:
        time.sleep(0.5)
    return (
        not set(state["topics"]) & _topics(settings)
        and not sync_redis(settings).exists(str(state["key"]))
        and not any(Path(str(state[k])).exists() for k in ("store", "table", "intent"))
    )


def _kept(settings: Settings, state: dict[str, Path | list[str] | str]) -> bool:
    return (
        set(state["topics"]) <= _topics(settings)
        and bool(sync_redis(settings).exists(str(state["key"])))
        and all(Path(str(state[k])).exists() for k in ("store", "table", "intent"))
    )


def test_stale_runs_are_dropped_a_running_one_and_other_names_are_kept(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"data_dir": tmp_path})
    stale = _run_state(settings, f"bench{int(time.time()) - 7 * 3600:08x}beef")
    legacy = _run_state(settings, "bench0a369d")  # a tag of earlier versions
    running = _run_state(settings, new_tag())  # another run, still going
    lookalike = _run_state(settings, "benchmarks")  # someone's own prefix
    (settings.data_dir / "sinks" / "crm.clickhouse-intent.json").write_text("{}")

    dropped = drop_bench_data(settings)

    assert dropped["topics"] >= len(stale["topics"]) + len(legacy["topics"])
    assert _gone(settings, stale) and _gone(settings, legacy)
    assert _kept(settings, running) and _kept(settings, lookalike)
    assert (settings.data_dir / "sinks" / "crm.clickhouse-intent.json").exists()
    assert settings.topic("events") in _topics(settings)  # the test's own topics stay


def test_a_run_drops_its_own_tags_only(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"data_dir": tmp_path})
    mine, other = new_tag(), new_tag()
    mine_state, other_state = _run_state(settings, mine), _run_state(settings, other)

    drop_bench_data(settings, only={mine})

    assert _gone(settings, mine_state) and _kept(settings, other_state)
    drop_bench_data(settings, only={other})
    assert _gone(settings, other_state)


def test_a_deployment_whose_prefix_is_a_tag_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="prefix is a tag"):
        drop_bench_data(settings.model_copy(update={"redis_prefix": f"{new_tag()}."}))
