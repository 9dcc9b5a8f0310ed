"""The ClickHouse sink's intent log: the offset ranges of the batch being inserted.

Written before a batch's inserts begin and cleared after its offsets are committed, so a
sink that died in between replays exactly those ranges (with the same deduplication
tokens) at its next start. One small JSON file, replaced atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import Settings
from pipeline.sinks.clickhouse.batch import TP


def intent_file(settings: Settings) -> Path:
    return settings.data_dir / "sinks" / f"{settings.topic_prefix}clickhouse-intent.json"


def load_intent(path: Path) -> dict[TP, tuple[int, int]]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {(t, int(p)): (a, b) for t, p, a, b in raw}


def save_intent(path: Path, ranges: dict[TP, tuple[int, int]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([[t, p, a, b] for (t, p), (a, b) in ranges.items()]))
    tmp.replace(path)
