"""Model checkpoints: state, the Kafka offsets it reflects, and the library versions.

Written to a temporary file and renamed, so a crash leaves the previous
checkpoint whole. A sidecar JSON (``.json``) carries the metrics for
``crm status`` without unpickling anything.

Versioned: ``FORMAT`` is written into every checkpoint, and ``load`` brings an older one
up to date through ``MIGRATIONS`` (one function per format step). Fields added to the
models' dataclasses since a checkpoint was written are filled with their defaults on
every load, so an additive change needs no new format; a change that renames, splits or
reinterprets state bumps ``FORMAT`` and registers its step. A checkpoint from a newer
format (a rolled-back deployment) is ignored: the models start fresh rather than misread it.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pipeline.logs import get_logger

log = get_logger("models")

LIBRARIES = ("river", "scipy", "numpy", "msgspec")


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{lib: version(lib) for lib in LIBRARIES}}


# 1: checkpoints written before the format was recorded (no ``format`` attribute).
# 2: the format recorded; the state is the same as 1's.
FORMAT = 2


@dataclass
class Checkpoint:
    state: Any
    offsets: dict[str, int]  # "topic:partition" -> next offset to read
    versions: dict[str, str]
    written_at: str
    # No default on purpose: a class-level default would make an old pickle without the
    # attribute read as the current format. ``format_of`` reads it.
    format: int


def format_of(cp: Checkpoint) -> int:
    return int(cp.__dict__.get("format", 1))


def _v1_to_v2(cp: Checkpoint) -> Checkpoint:
    return cp  # nothing moved: format 2 only starts recording the format


MIGRATIONS: dict[int, Callable[[Checkpoint], Checkpoint]] = {1: _v1_to_v2}


def fill_added_fields(obj: Any, _seen: set[int] | None = None) -> None:
    """Give dataclass instances every field their pickle predates, with its default.

    Unpickling restores ``__dict__`` without running ``__init__``: a field added to a
    model class after the checkpoint was written would be missing altogether. Walks
    dataclass fields and the values of dicts, lists and tuples (the scorer's sample of
    statistics, the churn model's timers); frozen dataclasses are filled too.
    """
    seen = _seen if _seen is not None else set()
    if id(obj) in seen:
        return
    if isinstance(obj, dict):
        seen.add(id(obj))
        for value in obj.values():
            fill_added_fields(value, seen)
        return
    if isinstance(obj, list | tuple):
        seen.add(id(obj))
        for value in obj:
            fill_added_fields(value, seen)
        return
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    seen.add(id(obj))
    for f in dataclasses.fields(obj):
        if f.name not in obj.__dict__:
            if f.default is not dataclasses.MISSING:
                object.__setattr__(obj, f.name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                object.__setattr__(obj, f.name, f.default_factory())
        fill_added_fields(getattr(obj, f.name, None), seen)


def migrate(cp: Checkpoint) -> Checkpoint | None:
    """``cp`` in the current format, or None if it comes from a newer one."""
    fmt = format_of(cp)
    if fmt > FORMAT:
        return None
    while fmt < FORMAT:
        cp = MIGRATIONS[fmt](cp)
        fmt += 1
    cp.format = FORMAT
    fill_added_fields(cp.state)
    return cp


def save(path: Path, state: Any, offsets: dict[str, int], summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(Checkpoint(state, offsets, versions(), now, FORMAT), fh)
    tmp.replace(path)
    side = path.with_suffix(".json")
    stmp = side.with_suffix(".json.tmp")
    stmp.write_text(
        json.dumps(
            {
                "written_at": now,
                "format": FORMAT,
                "offsets": offsets,
                "versions": versions(),
                **summary,
            }
        )
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
    migrated = migrate(cp)
    if migrated is None:
        log.warning(
            "model checkpoint from a newer format ignored",
            path=str(path),
            format=format_of(cp),
            supported=FORMAT,
        )
    return migrated


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
