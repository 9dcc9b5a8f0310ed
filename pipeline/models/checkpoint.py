"""Model checkpoints: state, the Kafka offsets it reflects, and the library versions.

Written to a temporary file and renamed, so a crash leaves the previous
checkpoint whole. A sidecar JSON (``.json``) carries the metrics for
``crm status`` without unpickling anything.
"""

from __future__ import annotations

import json
import pickle
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

LIBRARIES = ("river", "scipy", "numpy", "msgspec")


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{lib: version(lib) for lib in LIBRARIES}}


@dataclass
class Checkpoint:
    state: Any
    offsets: dict[str, int]  # "topic:partition" -> next offset to read
    versions: dict[str, str]
    written_at: str


def save(path: Path, state: Any, offsets: dict[str, int], summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(Checkpoint(state, offsets, versions(), now), fh)
    tmp.replace(path)
    side = path.with_suffix(".json")
    stmp = side.with_suffix(".json.tmp")
    stmp.write_text(
        json.dumps({"written_at": now, "offsets": offsets, "versions": versions(), **summary})
    )
    stmp.replace(side)


def load(path: Path) -> Checkpoint | None:
    """The last checkpoint, or None; a checkpoint from other library versions is ignored."""
    if not path.exists():
        return None
    with path.open("rb") as fh:
        cp = pickle.load(fh)  # our own file, written by save()
    if not isinstance(cp, Checkpoint) or cp.versions.get("river") != versions()["river"]:
        return None
    return cp


def summaries(root: Path) -> list[dict[str, Any]]:
    out = []
    for side in sorted(root.glob("**/*.json")):
        try:
            out.append(
                {"checkpoint": str(side.with_suffix(".pkl")), **json.loads(side.read_text())}
            )
        except (OSError, ValueError):
            continue
    return out
