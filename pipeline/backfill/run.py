"""``crm backfill``: the Beam pipeline from archive (or an outside file) to Redis and ClickHouse.

    files -> lines -> parse -> dedupe by event id
          -> identifier components (CombineGlobally of a union-find, side input)
          -> GroupByKey(component) -> identity rules in arrival order
          -> CombinePerKey(customer, fold/combine)      -> Redis profiles
          -> GroupByKey(day/bucket) -> ClickHouse events -> aggregates via the views
          -> merges                                      -> customer_merges, tombstones

Every transform is the pure function the stream workers call; only the wiring
is Beam's. Any Beam runner works; the in-process DirectRunner is the default.
Portable runners (Flink, Spark, Prism) get a job endpoint and, unless told
otherwise, the LOOPBACK environment: the Python SDK harness runs inside this
process, so no Docker is needed and the writers reach what this process reaches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from rich.console import Console

from pipeline.backfill import progress
from pipeline.backfill.archive_io import ReadArchive
from pipeline.backfill.transforms import (
    EVENTS_TAG,
    MEMBERS_TAG,
    MERGES_TAG,
    CombineProfile,
    ParseEvent,
    ResolveComponent,
    UnionIdentifiers,
    key_by_component,
    with_customer_id,
)
from pipeline.backfill.writers import (
    WriteEventRows,
    WriteMergeRows,
    WriteProfiles,
    WriteTombstones,
    clickhouse,
)
from pipeline.config import Settings
from pipeline.rule_files import load_identity_rules, load_loyalty
from pipeline.sinks.clickhouse.client import migrate

RUNNERS = {
    "direct": "DirectRunner",
    "flink": "FlinkRunner",
    "spark": "SparkRunner",
    "dataflow": "DataflowRunner",
    "prism": "PrismRunner",
    "portable": "PortableRunner",
}
# Runners that submit through Beam's job API, where LOOPBACK runs the SDK harness here.
PORTABLE = ("FlinkRunner", "SparkRunner", "PrismRunner", "PortableRunner")
TARGETS = ("redis", "clickhouse")


@dataclass
class BackfillResult:
    seconds: float
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.counters.get("events_read", 0)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def build(
    p: beam.Pipeline,
    lines: beam.PCollection,
    settings: Settings,
    targets: tuple[str, ...],
) -> dict[str, beam.PCollection]:
    """Wire the steps; returns the intermediate collections (tests assert on them)."""
    rules = load_identity_rules(
        settings.identity_rules, settings.pii_salt.get_secret_value(), settings.hash_pii
    )
    events = lines | "Parse" >> beam.ParDo(ParseEvent(rules))
    roots = events | "Components" >> beam.CombineGlobally(UnionIdentifiers())
    resolved = (
        events
        | "KeyByComponent" >> beam.Map(key_by_component, roots=beam.pvalue.AsSingleton(roots))
        | "GroupComponent" >> beam.GroupByKey()
        | "Resolve"
        >> beam.ParDo(ResolveComponent(rules, rows="clickhouse" in targets)).with_outputs(
            EVENTS_TAG, MERGES_TAG, MEMBERS_TAG, main="by_customer"
        )
    )
    profiles = (
        resolved.by_customer
        | "Fold" >> beam.CombinePerKey(CombineProfile(load_loyalty(settings.loyalty_rules).rules))
        | "SetCustomer" >> beam.Map(lambda kv: (kv[0], with_customer_id(kv)))
    )
    if "redis" in targets:
        redis_target = (settings.redis_url, settings.redis_prefix, settings.redis_cluster)
        members = resolved[MEMBERS_TAG]
        (
            {"profile": profiles, "members": members}
            | "JoinMembers" >> beam.CoGroupByKey()
            | "WithMembers"
            >> beam.FlatMap(
                lambda kv: [
                    (raw, list(kv[1]["members"][0]) if kv[1]["members"] else [])
                    for raw in kv[1]["profile"]
                ]
            )
            | "BatchProfiles" >> beam.BatchElements(min_batch_size=500, max_batch_size=2000)
            | "WriteProfiles" >> beam.ParDo(WriteProfiles(*redis_target))
        )
        (
            resolved[MERGES_TAG]
            | "Absorbed" >> beam.Map(lambda m: (m[0], m[1]))
            | "BatchTombstones" >> beam.BatchElements(min_batch_size=500, max_batch_size=2000)
            | "WriteTombstones" >> beam.ParDo(WriteTombstones(*redis_target))
        )
    if "clickhouse" in targets:
        dsn = settings.clickhouse_dsn
        (
            resolved[EVENTS_TAG]
            | "GroupRows" >> beam.GroupByKey()
            | "WriteEvents" >> beam.ParDo(WriteEventRows(dsn))
        )
        (
            resolved[MERGES_TAG]
            | "BatchMerges" >> beam.BatchElements(min_batch_size=500, max_batch_size=5000)
            | "WriteMerges" >> beam.ParDo(WriteMergeRows(dsn))
        )
    return {"profiles": profiles, "merges": resolved[MERGES_TAG], "rows": resolved[EVENTS_TAG]}


def runner_class(name: str) -> str:
    """``flink``, ``Flink`` or ``FlinkRunner`` -> ``FlinkRunner``."""
    key = name.strip().lower().removesuffix("runner") or name
    if key not in RUNNERS:
        raise ValueError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}")
    return RUNNERS[key]


def pipeline_options(
    runner: str, extra: list[str] | None = None, job_endpoint: str | None = None
) -> PipelineOptions:
    name = runner_class(runner)
    args = [f"--runner={name}", *(extra or [])]
    if name == "DirectRunner":
        # In process: the embedded ClickHouse engine allows one session per process.
        args += ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    if job_endpoint:
        args.append(f"--job_endpoint={job_endpoint}")
    if name in PORTABLE and not any(a.startswith("--environment_type") for a in args):
        # The SDK harness as threads of this process: no Docker, and the writers share
        # this process's connections (the embedded ClickHouse included) and progress bar.
        args.append("--environment_type=LOOPBACK")
    return PipelineOptions(args)


def run_backfill(
    settings: Settings,
    *,
    archive: str | None = None,
    start: str | None = None,
    end: str | None = None,
    events: list[bytes] | None = None,
    total: int | None = None,
    targets: tuple[str, ...] = TARGETS,
    runner: str = "DirectRunner",
    extra_options: list[str] | None = None,
    job_endpoint: str | None = None,
    console: Console | None = None,
) -> BackfillResult:
    """Run the pipeline over the ``archive`` days [start, end] or already validated ``events``.

    ``archive`` is a directory or an object store prefix (``gs://``, ``s3://``).
    """
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {TARGETS}")
    if "clickhouse" in targets:
        migrate(clickhouse(settings.clickhouse_dsn))
    console = console or Console(stderr=True)
    options = pipeline_options(runner, extra_options, job_endpoint)
    began = time.monotonic()
    with progress.ProgressBar(console, total, "backfill"):
        p = beam.Pipeline(options=options)
        if archive is not None:
            lines = p | "ReadArchive" >> ReadArchive(archive, start, end)
        else:
            lines = p | "Input" >> beam.Create(events or [])
        build(p, lines, settings, targets)
        result = p.run()
        result.wait_until_finish()
    seconds = time.monotonic() - began
    return BackfillResult(seconds, counters(result))


def counters(result: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in result.metrics().query()["counters"]:
        if c.key.metric.namespace == "backfill":
            name = c.key.metric.name
            out[name] = out.get(name, 0) + int(c.committed or c.attempted or 0)
    return out
