"""The archive through Beam's file IO: patterns per day, the date filter, manifests, lines."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipeline.backfill import archive_io
from pipeline.backfill.inputs import read_lines
from pipeline.backfill.run import pipeline_options, runner_class
from pipeline.sinks.archive import write_part


def archive(root: Path) -> dict[str, list[bytes]]:
    days = {
        "2024-03-01": [b'{"n":1}', b'{"n":2}'],
        "2024-03-02": [b'{"n":3}'],
        "2024-03-04": [b'{"n":4}', b'{"n":5}', b'{"n":6}'],
    }
    offset = 0
    for day, values in days.items():
        for hour, value in enumerate(values):
            write_part(root, f"date={day}/hour={hour:02d}", "t.events", 0, [(offset, value)])
            offset += 1
    return days


def test_patterns_are_one_per_day_when_both_ends_are_given(tmp_path: Path):
    assert archive_io.patterns(str(tmp_path), "2024-03-01", "2024-03-03") == [
        f"{tmp_path}/date=2024-03-0{d}/hour=*/part-*.jsonl.gz" for d in (1, 2, 3)
    ]
    # An open end matches every day; in_range filters (gs://, s3:// need apache-beam's extras).
    assert archive_io.patterns(str(tmp_path), None, "2024-03-03") == [
        f"{tmp_path}/date=*/hour=*/part-*.jsonl.gz"
    ]


def test_in_range_reads_the_date_directory():
    path = "s3://b/a/date=2024-03-02/hour=05/part-000-1-2.jsonl.gz"
    assert archive_io.in_range(path, None, None)
    assert archive_io.in_range(path, "2024-03-02", "2024-03-02")
    assert not archive_io.in_range(path, "2024-03-03", None)
    assert not archive_io.in_range(path, None, "2024-03-01")


def test_size_counts_files_and_manifest_records_in_range(tmp_path: Path):
    archive(tmp_path)
    assert archive_io.size(str(tmp_path), None, None) == (6, 6)
    assert archive_io.size(str(tmp_path), "2024-03-02", None) == (4, 4)
    assert archive_io.size(str(tmp_path), "2024-03-01", "2024-03-03") == (3, 3)
    assert archive_io.size(str(tmp_path / "missing"), None, None) == (0, 0)


def test_read_archive_reads_the_range_like_replay_does(tmp_path: Path):
    days = archive(tmp_path)
    local = [
        line
        for f in sorted(tmp_path.glob("date=*/hour=*/part-*.jsonl.gz"))
        if "2024-03-02" <= f.parent.parent.name[5:] <= "2024-03-04"
        for line in read_lines(str(f))
    ]
    assert sorted(local) == sorted(days["2024-03-02"] + days["2024-03-04"])
    with beam.Pipeline(options=pipeline_options("direct")) as p:
        lines = p | archive_io.ReadArchive(str(tmp_path), "2024-03-02", "2024-03-04")
        assert_that(lines, equal_to(local))


def test_runner_names_and_loopback_for_portable_runners():
    assert runner_class("flink") == runner_class("FlinkRunner") == "FlinkRunner"
    assert runner_class("Direct") == "DirectRunner"
    opts = pipeline_options("flink", job_endpoint="localhost:8099").get_all_options()
    assert opts["job_endpoint"] == "localhost:8099"
    assert opts["environment_type"] == "LOOPBACK"
    opts = pipeline_options("flink", ["--environment_type=PROCESS"]).get_all_options()
    assert opts["environment_type"] == "PROCESS"
    assert pipeline_options("direct").get_all_options()["environment_type"] is None
