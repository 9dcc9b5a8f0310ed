"""Structured logging: JSON lines in production, readable lines on a terminal.

One stream: structlog's own loggers and the standard library's (Faust, aiokafka,
uvicorn, Beam...) are rendered by the same processors to standard error, so
``CRM_LOG_FORMAT=json`` gives one JSON object per line whoever logged it, and
standard output stays free for what commands print (``crm sql --format json``).
"""

from __future__ import annotations

import logging
import sys

import structlog

from pipeline.config import Settings


def configure(settings: Settings) -> None:
    level = getattr(logging, settings.log_level)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
                structlog.stdlib.ExtraAdder(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # Libraries log per message at DEBUG (Faust's Topic.send builds a record for every
    # send): below INFO only when asked for explicitly, never on the hot path by accident.
    for noisy in ("faust", "aiokafka", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
