"""``crm demo``: the whole pipeline on one machine, narrated."""

from __future__ import annotations

import asyncio
import subprocess
import time

from rich.console import Console
from rich.rule import Rule

from pipeline.cli.analytics import report_cmd
from pipeline.cli.audience_report import print_audience
from pipeline.cli.processes import crm_process
from pipeline.cli.profiles_report import print_profiles
from pipeline.cli.report import print_sim_stats, print_topic_summary, summarise_topics
from pipeline.config import REPO_ROOT, Settings
from pipeline.kafka.inspect import end_offsets, group_lag
from pipeline.sources.simulator import Simulator


def run_demo(
    settings: Settings, console: Console, *, duration: float, rate: float, customers: int
) -> int:
    console.print(Rule("1. infrastructure: Kafka (KRaft), Redis, embedded ClickHouse"))
    subprocess.run([str(REPO_ROOT / "infra" / "services.sh"), "up"], check=True)
    events_start = end_offsets(settings, settings.topic("events"))
    dlq_start = end_offsets(settings, settings.topic("events.dlq"))
    merges_start = end_offsets(settings, settings.topic("identity.merges"))
    changes_start = end_offsets(settings, settings.topic("segments.changes"))
    api = f"http://{settings.api_host}:{settings.api_port}"

    base = f"http://{settings.collector_host}:{settings.collector_port}"
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.print(
        Rule(
            f"2. collector on {base}, simulator: {customers} customers, "
            f"{rate:.0f} events/s, {duration:.0f}s"
        )
    )
    with (
        crm_process(["sink", "clickhouse"], None, logs / "clickhouse-sink.log"),
        crm_process(["sink", "archive", "--max-wait", "1"], None, logs / "archive-sink.log"),
        crm_process(["worker"], None, logs / "worker.log"),
        crm_process(["collector"], f"{base}/health", logs / "collector.log"),
        crm_process(["api"], f"{api}/health", logs / "api.log"),
    ):
        sim = Simulator(base, sorted(settings.write_key_set)[0], customers)
        stats = asyncio.run(sim.run(rate, duration))
        print_sim_stats(stats, console)
        console.print(
            Rule("3. stream workers: identity resolution and profiles (waiting for lag 0)")
        )
        topics = [settings.topic("events"), settings.topic("events.by_customer")]
        deadline = time.monotonic() + 120
        while (
            lag := group_lag(settings, settings.worker_id, topics)
        ) > 0 and time.monotonic() < deadline:
            time.sleep(1)
        if lag:
            console.print(f"[yellow]worker still {lag:,} records behind after 120s")
        print_profiles(settings, console, merges_start)
        console.print(Rule("4. segments, loyalty ladder and personalization (crm api)"))
        print_audience(settings, console, api, changes_start)
        sink_topics = [settings.topic(t) for t in ("events.by_customer", "events.dlq", "profiles")]
        sink_group = f"{settings.topic_prefix}crm-clickhouse"
        deadline = time.monotonic() + 120
        while group_lag(settings, sink_group, sink_topics) > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        console.print(Rule("5. ClickHouse overview (crm report, served by the sink process)"))
        report_cmd()

    console.print(Rule("6. what the broker holds for this run"))
    summary = summarise_topics(settings, events_start, dlq_start)
    print_topic_summary(summary, console, stats.seconds)
    ok = stats.failed_requests == 0 and summary.total_accepted == stats.accepted
    if not ok:
        console.print(
            f"[red]mismatch: collector acknowledged {stats.accepted}, Kafka holds "
            f"{summary.total_accepted}; failed requests {stats.failed_requests}"
        )
        return 1
    console.print(
        f"[green]every acknowledged event is in Kafka ({summary.total_accepted:,}); "
        f"{summary.total_dead:,} dead-lettered with reasons"
    )
    return 0
