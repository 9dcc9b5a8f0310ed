"""JSON Schema files in ``schemas/``, generated from the msgspec event models.

The published contract and the code cannot drift: ``crm schemas export`` writes
the files and a unit test fails when the committed files differ from what the
models generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from pipeline.config import REPO_ROOT
from pipeline.events import EVENT_TYPES, Event

SCHEMA_DIR = REPO_ROOT / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


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
    return files


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in generate().items():
        path = directory / name
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
