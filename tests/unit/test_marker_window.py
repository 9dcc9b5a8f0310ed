"""Per-event markers' time window: settings plumbing, the window guarantee, value encodings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import Settings, get_settings
from pipeline.stores.identity_redis import RedisIdentityGraph
from pipeline.transforms.identity import Rules, new_customer_id
from pipeline.wire.keys import (
    LUA_MARKERS,
    MarkerWindow,
    RedisKeys,
    pack_customer,
    unpack_customer,
)

NOW = 1_780_000_000.0  # any unix time


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_defaults_remember_a_day_sized_for_1000_events_a_second() -> None:
    s = Settings()
    assert (s.dedupe_window_s, s.dedupe_rate) == (86_400, 1000)
    w = MarkerWindow(s.dedupe_window_s, s.dedupe_rate)
    assert w.generation_s == 21_600
    assert w.shards() == 337_500  # 1000/s x 6 h / 64 markers a hash
    assert w.shards(parts=16) == 21_094


def test_the_window_settings_reach_the_identity_markers(env: pytest.MonkeyPatch) -> None:
    env.setenv("CRM_DEDUPE_WINDOW_S", "3600")
    env.setenv("CRM_DEDUPE_RATE", "50")
    graph = RedisIdentityGraph(aioredis.Redis(), "t:", Rules())  # no command is sent
    assert graph.window == MarkerWindow(3600, 50)
    assert graph.shards == 1 + 50 * 900 // 64


@pytest.mark.parametrize("window_s", ["59", "-1", "x"])
def test_a_window_under_a_minute_is_refused(env: pytest.MonkeyPatch, window_s: str) -> None:
    env.setenv("CRM_DEDUPE_WINDOW_S", window_s)
    with pytest.raises(ValueError, match="dedupe_window_s"):
        Settings()


def test_a_window_shorter_than_its_generations_is_refused() -> None:
    with pytest.raises(ValueError):
        MarkerWindow(3)
    with pytest.raises(ValueError):
        MarkerWindow(3600, 0)


@given(
    st.integers(60, 90 * 86_400),
    st.floats(0, 1e9, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
)
def test_a_marker_is_found_for_the_whole_window_and_lives_at_most_5_4_of_it(
    window_s: int, written: float, later: float
) -> None:
    w = MarkerWindow(window_s)
    start = w.starts(written)[0]
    expire_at = w.expire_at(start)
    assert start <= written < start + w.generation_s
    assert window_s <= expire_at - written <= window_s + w.generation_s
    assert w.generation_s <= window_s / 4 + 1
    # Looked up at any time within the window: its generation is read and still alive.
    lookup = written + later * window_s
    assert start in w.starts(lookup)
    assert expire_at > lookup
    # Redis drops the hash at expire_at; a generation later no lookup even reads it.
    assert start not in w.starts(expire_at + w.generation_s)


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_event_ids_get_distinct_fields_and_a_shard_in_range(a: str, b: str) -> None:
    w = MarkerWindow(3600, 100)
    fa, sa = w.marker(a, 7)
    assert len(fa) == MarkerWindow.FIELD_BYTES and 0 <= sa < 7
    assert w.marker(a, 7) == (fa, sa)
    assert (a == b) == (w.marker(b, 7) == (fa, sa))


def test_scripts_name_the_hashes_as_the_key_owner_does() -> None:
    """LUA_MARKERS builds head .. start .. ':' .. shard from these arguments."""
    w = MarkerWindow(400)
    keys = RedisKeys("t:")
    head, n, *starts = w.hashes(keys.event_markers_head, NOW)
    assert n == len(starts) == w.GENERATIONS + 1
    assert starts == w.starts(NOW) == sorted(starts, reverse=True)
    assert [f"{head!s}{s}:3" for s in starts] == [keys.event_markers(int(s), 3) for s in starts]


@given(st.binary(min_size=10, max_size=10))
def test_customer_ids_are_stored_in_ten_bytes_or_verbatim(raw: bytes) -> None:
    cid = "c_" + raw.hex()
    packed = pack_customer(cid)
    assert unpack_customer(packed) == cid
    assert len(packed) == (10 if raw[:1] != b"=" else 23)


@given(st.text(max_size=40))
def test_any_customer_id_round_trips(cid: str) -> None:
    assert unpack_customer(pack_customer(cid)) == cid


def test_new_customer_ids_are_compact() -> None:
    cid = new_customer_id(("user_id", "u1"))
    assert len(pack_customer(cid)) in (10, 23)
    assert pack_customer("C_" + cid[2:].upper()) == b"=" + ("C_" + cid[2:].upper()).encode()


def test_the_scripts_split_markers_at_the_field_length() -> None:
    assert f"string.sub(arg, 1, {MarkerWindow.FIELD_BYTES})" in LUA_MARKERS
    arg = MarkerWindow(600).marker_arg("e1", 1000)
    field, shard = MarkerWindow(600).marker("e1", 1000)
    assert arg[: MarkerWindow.FIELD_BYTES] == field and int(arg[12:]) == shard
