"""A lean install: collector, worker, API and the ClickHouse client work without the
embedded engine (chdb) and Apache Beam, and say how to install them when asked for."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_EXTRAS = "import sys\nsys.modules['chdb'] = None\nsys.modules['apache_beam'] = None\n"


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_core_processes_import_without_the_extras():
    out = _run(
        "import pipeline.worker.app, pipeline.api.app, pipeline.sources.collector.app\n"
        "import pipeline.sinks.clickhouse.runner, pipeline.sinks.archive, pipeline.cli.main\n"
        "print('ok')"
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_embedded_engine_missing_is_a_clear_error():
    out = _run(
        "from pipeline.sinks.clickhouse.client import connect\n"
        "try:\n    connect('chdb:///tmp/crm-no-chdb')\n"
        "except RuntimeError as exc:\n    print(exc)\n"
    )
    assert "pip install 'crm-pipeline[embedded]'" in out.stdout, out.stderr[-2000:]
    assert "CRM_CLICKHOUSE_URL" in out.stdout


def test_backfill_without_beam_says_which_extra():
    out = _run("from pipeline.cli.main import app\napp()", "backfill")
    assert out.returncode == 2
    assert "pip install 'crm-pipeline[backfill]'" in out.stderr + out.stdout


def test_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("crm-pipeline ")
