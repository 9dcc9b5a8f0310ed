"""ModelHost: the offsets a checkpoint records for the events the models learned from."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pipeline.config import Settings
from pipeline.models.host import ModelHost


def rec(topic: str, partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=partition, offset=offset)


def test_processed_records_the_next_offset_per_partition_and_never_goes_back(
    tmp_path: Path,
) -> None:
    host = ModelHost(Settings(data_dir=tmp_path))
    host.processed([rec("t", 0, 5), rec("t", 1, 2), rec("t", 0, 6), rec("u", 0, 9)])
    assert host.offsets == {"t:0": 7, "t:1": 3, "u:0": 10}
    host.processed([rec("t", 0, 3), rec("t", 1, 4)])  # a replayed tail: t:0 stays ahead
    assert host.offsets == {"t:0": 7, "t:1": 5, "u:0": 10}
