"""Importing store transactions from CSV files (one row per line item).

Rows with the same ``transaction_id`` in a run form one ``pos_transaction`` and go
through the same validation and enrichment as the HTTP collector. Progress is
checkpointed after each acknowledged chunk, so an interrupted import resumes
where it stopped; event ids are derived from store and transaction id, so a
chunk sent twice is recognised downstream as duplicates. Rejected transactions
are dead-lettered and written, row by row with the reason, to a report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from rich.progress import Progress

from pipeline.config import Settings
from pipeline.errors import TerminalError
from pipeline.events import PosTransaction
from pipeline.kafka.producer import ConfirmedProducer
from pipeline.sources.ingest import Ingestor, Prepared

COLUMNS = (
    "transaction_id",
    "timestamp",
    "store_id",
    "loyalty_id",
    "email",
    "phone",
    "sku",
    "category",
    "brand",
    "quantity",
    "price",
    "currency",
    "points_redeemed",
    "total",
)
REQUIRED = ("transaction_id", "timestamp", "store_id", "sku", "price")
CHUNK = 2000


@dataclass
class ImportResult:
    rows: int = 0
    transactions: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped_rows: int = 0
    rejects_path: Path | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"rows read {self.rows:,} (resumed after {self.skipped_rows:,}), "
            f"transactions {self.transactions:,}: accepted {self.accepted:,}, "
            f"rejected {self.rejected:,}"
        )


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``our=theirs`` pairs; unknown column names are an error, not a silent no-op."""
    out = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or ours not in COLUMNS:
            raise ValueError(
                f"bad mapping {pair!r}: expected one of {', '.join(COLUMNS)}=<csv column>"
            )
        out[ours] = theirs
    return out


def _num(row: dict[str, str], col: str, cast: type, rownum: int) -> Any:
    value = (row.get(col) or "").strip()
    if not value:
        return None
    try:
        return cast(value)
    except ValueError:
        raise TerminalError(f"row {rownum}: {col}={value!r} is not a number", "schema") from None


def _timestamp(value: str, rownum: int) -> str:
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TerminalError(
            f"row {rownum}: timestamp={value!r} is not ISO 8601", "schema"
        ) from None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()


def to_transaction(rows: list[tuple[int, dict[str, str]]]) -> bytes:
    """JSON of one pos_transaction built from its line-item rows."""
    first_num, first = rows[0]
    for rownum, row in rows:
        missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
        if missing:
            raise TerminalError(f"row {rownum}: missing {', '.join(missing)}", "schema")
    items = []
    for rownum, row in rows:
        item = {
            "sku": row["sku"].strip(),
            "price": _num(row, "price", float, rownum),
            "quantity": _num(row, "quantity", int, rownum) or 1,
        }
        for col in ("category", "brand"):
            if (row.get(col) or "").strip():
                item[col] = row[col].strip()
        items.append(item)
    total = _num(first, "total", float, first_num)
    doc: dict[str, Any] = {
        "messageId": f"pos-{first['store_id'].strip()}-{first['transaction_id'].strip()}",
        "transactionId": first["transaction_id"].strip(),
        "storeId": first["store_id"].strip(),
        "timestamp": _timestamp(first["timestamp"], first_num),
        "items": items,
        "total": total
        if total is not None
        else round(sum(i["price"] * i["quantity"] for i in items), 2),
        "currency": (first.get("currency") or "EUR").strip().upper(),
        "pointsRedeemed": _num(first, "points_redeemed", int, first_num) or 0,
    }
    for col, key in (("loyalty_id", "loyaltyId"), ("email", "email"), ("phone", "phone")):
        if (first.get(col) or "").strip():
            doc[key] = first[col].strip()
    return msgspec.json.encode(doc)


def transaction_groups(
    reader: Iterator[dict[str, str]], mapping: dict[str, str], skip: int
) -> Iterator[list[tuple[int, dict[str, str]]]]:
    """Consecutive rows of one transaction, with 1-based data row numbers."""
    current: list[tuple[int, dict[str, str]]] = []
    for rownum, raw in enumerate(reader, start=1):
        if rownum <= skip:
            continue
        row = {ours: raw.get(mapping.get(ours, ours), "") or "" for ours in COLUMNS}
        if current and row["transaction_id"] != current[0][1]["transaction_id"]:
            yield current
            current = []
        current.append((rownum, row))
    if current:
        yield current


class _Checkpoint:
    """Rows already acknowledged, keyed by file identity, written atomically."""

    def __init__(self, settings: Settings, file: Path) -> None:
        stat = file.stat()
        self.identity = f"{file.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
        directory = settings.data_dir / "imports"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / (file.name + ".checkpoint.json")

    def load(self) -> int:
        if not self.path.exists():
            return 0
        data = json.loads(self.path.read_text())
        return int(data["rows_done"]) if data.get("identity") == self.identity else 0

    def save(self, rows_done: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": self.identity, "rows_done": rows_done}))
        tmp.replace(self.path)


def import_file(
    settings: Settings,
    file: Path,
    mapping: dict[str, str],
    rejects: Path | None,
    *,
    restart: bool = False,
    producer: ConfirmedProducer | None = None,
) -> ImportResult:
    checkpoint = _Checkpoint(settings, file)
    skip = 0 if restart else checkpoint.load()
    result = ImportResult(
        skipped_rows=skip, rejects_path=rejects or file.with_suffix(".rejected.csv")
    )
    ingestor = Ingestor(settings)
    own = producer is None
    producer = producer or ConfirmedProducer(settings.kafka_bootstrap, ack_timeout_ms=30_000)
    rejected_rows: list[dict[str, str]] = []
    try:
        with file.open(newline="", encoding="utf-8-sig") as fh, Progress() as progress:
            reader = csv.DictReader(fh)
            missing = [
                mapping.get(c, c)
                for c in REQUIRED
                if mapping.get(c, c) not in (reader.fieldnames or [])
            ]
            if missing:
                raise ValueError(
                    f"{file}: missing columns {', '.join(missing)} (use --map ours=theirs)"
                )
            task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
            chunk: list[tuple[bytes, Any]] = []
            chunk_rows: list[list[tuple[int, dict[str, str]]]] = []
            done = skip
            for group in transaction_groups(reader, mapping, skip):
                try:
                    raw = to_transaction(group)
                    item: Any = raw
                except TerminalError as exc:
                    raw, item = msgspec.json.encode([r for _, r in group]), exc
                chunk.append((raw, item))
                chunk_rows.append(group)
                if len(chunk) >= CHUNK:
                    done = _flush(
                        ingestor, producer, chunk, chunk_rows, result, rejected_rows, checkpoint
                    )
                    chunk, chunk_rows = [], []
                    progress.update(task, completed=fh.tell())
            if chunk:
                done = _flush(
                    ingestor, producer, chunk, chunk_rows, result, rejected_rows, checkpoint
                )
            progress.update(task, completed=file.stat().st_size)
            result.rows = done
    finally:
        if own:
            producer.close()
    if rejected_rows:
        with result.rejects_path.open("w", newline="") as out:  # type: ignore[union-attr]
            writer = csv.DictWriter(out, fieldnames=["row", *COLUMNS, "error"])
            writer.writeheader()
            writer.writerows(rejected_rows)
    return result


def _flush(
    ingestor: Ingestor,
    producer: ConfirmedProducer,
    chunk: list[tuple[bytes, Any]],
    groups: list[list[tuple[int, dict[str, str]]]],
    result: ImportResult,
    rejected_rows: list[dict[str, str]],
    checkpoint: _Checkpoint,
) -> int:
    prepared = Prepared()
    for (raw, item), group in zip(chunk, groups, strict=True):
        if isinstance(item, TerminalError):
            sub = ingestor.prepare_events([(raw, item)], source="pos-csv")
        else:
            sub = ingestor.prepare_raw([raw], source="pos-csv", expected=PosTransaction)
        prepared.records += sub.records
        prepared.accepted += sub.accepted
        for rej in sub.rejected:
            prepared.rejected.append(rej)
            for rownum, row in group:
                rejected_rows.append({"row": str(rownum), **row, "error": rej.reason})
            result.reasons[rej.error_type] = result.reasons.get(rej.error_type, 0) + 1
    producer.send_sync(prepared.records, timeout=120)
    Ingestor.count(prepared, "pos-csv")
    result.transactions += len(chunk)
    result.accepted += prepared.accepted
    result.rejected += len(prepared.rejected)
    last_row = groups[-1][-1][0]
    checkpoint.save(last_row)
    return last_row
