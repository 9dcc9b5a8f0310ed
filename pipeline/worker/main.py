"""Process entry point of ``crm worker``."""

from __future__ import annotations

import faust

from pipeline import gc_tuning
from pipeline.config import Settings
from pipeline.kafka.lag import LagReporter
from pipeline.logs import configure
from pipeline.metrics import serve
from pipeline.worker.app import create_app


def run_worker(settings: Settings) -> None:
    configure(settings)
    (settings.data_dir / "faust" / settings.worker_id / settings.worker_name).mkdir(
        parents=True, exist_ok=True
    )
    serve(settings.metrics_port, settings.metrics_host)
    if settings.metrics_port:
        topics = [settings.topic("events"), settings.topic("events.by_customer")]
        LagReporter(settings.kafka_bootstrap, settings.worker_id, topics).start()
    app = create_app(settings)
    gc_tuning.tune(settings)  # after the models were restored: they are long-lived
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
