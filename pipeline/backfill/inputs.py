"""What a backfill reads: archive files for a date range, or a historical file from outside.

Outside files go through the collector's own validation and enrichment
(``Ingestor``), so a row the collector would reject is rejected here too, with
the same reason, into a rejects file; nothing is silently dropped.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import TerminalError
from pipeline.events import PosTransaction
from pipeline.sinks.archive import read_archive
from pipeline.sources.ingest import Ingestor, Prepared
from pipeline.sources.pos_csv import REQUIRED, to_transaction, transaction_groups


def archive_files(root: Path, start: str | None, end: str | None) -> tuple[list[Path], int]:
    """Files with dates in [start, end] and their record count from the manifests."""
    files = read_archive(root, start, end)
    total = 0
    for f in files:
        manifest = f.with_name(f.name.removesuffix(".jsonl.gz") + ".manifest.json")
        if manifest.exists():
            total += int(json.loads(manifest.read_text())["records"])
    return files, total


def read_lines(path: str) -> Iterator[bytes]:
    """The events of one archive file (gzip JSON Lines)."""
    with gzip.open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


@dataclass
class Imported:
    events: list[bytes] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)


def _collect(prepared: Prepared, out: Imported, offset: int) -> None:
    out.events += [r.value for r in prepared.records if r.topic.endswith(".events")]
    out.rejected += [
        {"item": offset + rej.index, "error_type": rej.error_type, "reason": rej.reason}
        for rej in prepared.rejected
    ]


def import_file(settings: Settings, path: Path) -> Imported:
    """Validate and enrich a CSV of store transactions or a JSON Lines file of events."""
    ingestor = Ingestor(settings)
    out = Imported()
    source = f"backfill:{path.name}"
    if path.suffix.lower() in {".jsonl", ".ndjson", ".json"} or path.name.endswith(".jsonl.gz"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            lines = [line.strip() for line in fh]
        items = [line for line in lines if line]
        _collect(ingestor.prepare_raw(items, source=source), out, 0)
        return out
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: expected .csv, .jsonl or .jsonl.gz")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing columns {', '.join(missing)} "
                "(store transactions: one row per line item, see `crm import pos --help`)"
            )
        for group in transaction_groups(reader, {}, 0):
            try:
                raw = to_transaction(group)
            except TerminalError as exc:
                out.rejected.append(
                    {"item": group[0][0], "error_type": exc.error_type, "reason": exc.reason}
                )
                continue
            prepared = ingestor.prepare_raw([raw], source=source, expected=PosTransaction)
            _collect(prepared, out, group[0][0])
    return out
