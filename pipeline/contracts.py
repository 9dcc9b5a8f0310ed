"""JSON Schema files in ``schemas/``, generated from the msgspec models.

``schemas/*.schema.json`` are the events clients send; ``schemas/internal/`` the
payloads of the topics between our own processes (``events.by_customer``, the
merge log, ``profiles``, ``segments.changes``), whose structs live in
``pipeline.wire``. The published contract and the code cannot drift: ``crm
schemas export`` writes the files and a unit test fails when the committed files
differ from what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from pipeline.config import REPO_ROOT
from pipeline.events import EVENT_TYPES, Event
from pipeline.wire.change import Change
from pipeline.wire.records import AnyRouted, IdentityDecision
from pipeline.wire.snapshot import Snapshot

SCHEMA_DIR = REPO_ROOT / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


# Topic payloads between our own processes: (file name, title, model).
INTERNAL: list[tuple[str, str, Any]] = [
    ("by_customer", "events.by_customer: an event, merge, absorb, forget or tick", AnyRouted),
    ("merge_log", "identity.merges: one identity decision", IdentityDecision),
    ("snapshot", "profiles: one profile summary", Snapshot),
    ("change", "segments.changes: one audience transition", Change),
]


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def generate() -> dict[str, str]:
    """File name -> content for every schema file."""
    files: dict[str, str] = {}
    union = msgspec.json.schema(Event)
    union = {
        "$schema": DIALECT,
        "$id": "event.schema.json",
        "title": "CRM pipeline event (any type)",
        **union,
    }
    files["event.schema.json"] = _dump(union)
    for cls in EVENT_TYPES:
        doc = msgspec.json.schema(cls)
        name = str(cls.__struct_config__.tag)
        files[f"{name}.schema.json"] = _dump(
            {"$schema": DIALECT, "$id": f"{name}.schema.json", **doc}
        )
    for name, title, model in INTERNAL:
        doc = msgspec.json.schema(model)
        files[f"internal/{name}.schema.json"] = _dump(
            {"$schema": DIALECT, "$id": f"internal/{name}.schema.json", "title": title, **doc}
        )
    return files


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in generate().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    out = []
    for name, content in generate().items():
        path = directory / name
        if not path.exists() or path.read_text() != content:
            out.append(name)
    return out
