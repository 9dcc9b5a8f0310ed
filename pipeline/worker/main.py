"""Process entry point of ``crm worker``."""

from __future__ import annotations

import faust
from prometheus_client import start_http_server

from pipeline.config import Settings
from pipeline.logs import configure
from pipeline.worker.app import create_app


def run_worker(settings: Settings) -> None:
    configure(settings)
    (settings.data_dir / "faust" / settings.worker_id / settings.worker_name).mkdir(
        parents=True, exist_ok=True
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
