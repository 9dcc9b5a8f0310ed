"""The archive read with Beam's file IO, so ``--archive`` may be a local path or an object store.

Files are matched and opened inside the pipeline (``fileio.MatchAll``,
``ReadMatches``), by the workers, through Beam's filesystems: a local path, or
``gs://``/``s3://`` with apache-beam's ``gcp``/``aws`` extra installed. The
submitting process only reads the manifests, for the progress bar's total.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

PARTS = "hour=*/part-*.jsonl.gz"  # under date=YYYY-MM-DD/, as the archive sink writes them


def patterns(root: str, start: str | None, end: str | None) -> list[str]:
    """File patterns for [start, end]: one per day when both ends are given, else every day.

    A day without files matches nothing, which is allowed (the patterns have wildcards).
    """
    if start and end:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        days = (first + timedelta(days=n) for n in range((last - first).days + 1))
        return [FileSystems.join(root, f"date={d.isoformat()}", PARTS) for d in days]
    return [FileSystems.join(root, "date=*", PARTS)]


def in_range(path: str, start: str | None, end: str | None) -> bool:
    """Whether a file's ``date=`` directory is within [start, end] (either may be open)."""
    day = next((part[5:] for part in path.split("/") if part.startswith("date=")), "")
    return (start is None or day >= start) and (end is None or day <= end)


def size(root: str, start: str | None, end: str | None) -> tuple[int, int]:
    """(files, records) in [start, end]; records from the manifests the archive sink writes."""
    data = patterns(root, start, end)
    manifests = [p.removesuffix(".jsonl.gz") + ".manifest.json" for p in data]
    files = sum(
        in_range(m.path, start, end)
        for found in FileSystems.match(data)
        for m in found.metadata_list
    )
    records = 0
    for found in FileSystems.match(manifests):
        for m in found.metadata_list:
            if in_range(m.path, start, end):
                with FileSystems.open(m.path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
                    records += int(json.loads(fh.read())["records"])
    return files, records


def lines(readable: fileio.ReadableFile) -> Iterator[bytes]:
    """The events of one matched archive file (gzip JSON Lines)."""
    with readable.open(compression_type=CompressionTypes.GZIP) as fh:
        for line in iter(fh.readline, b""):  # Beam's CompressedFile has readline, no __iter__
            line = line.strip()
            if line:
                yield line


class ReadArchive(beam.PTransform):
    """Archive lines for [start, end] under ``root``, matched and read by the workers."""

    def __init__(self, root: str, start: str | None = None, end: str | None = None) -> None:
        super().__init__()
        self.root, self.start, self.end = root, start, end

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        start, end = self.start, self.end
        return (
            pbegin
            | "Patterns" >> beam.Create(patterns(self.root, start, end))
            | "Match" >> fileio.MatchAll()
            | "InRange" >> beam.Filter(lambda m: in_range(m.path, start, end))
            # Matching is one step; reshuffle so that the files spread over the workers.
            | "Spread" >> beam.Reshuffle()
            | "Open" >> fileio.ReadMatches()
            | "Lines" >> beam.FlatMap(lines)
        )
