"""Structured logging: JSON lines in production, readable lines on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from pipeline.config import Settings


def configure(settings: Settings) -> None:
    level = getattr(logging, settings.log_level)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
    # Libraries log per message at DEBUG (Faust's Topic.send builds a record for every
    # send): below INFO only when asked for explicitly, never on the hot path by accident.
    for noisy in ("faust", "aiokafka", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
