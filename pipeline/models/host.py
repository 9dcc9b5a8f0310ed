"""Where a worker keeps its models: restore on start, checkpoint with offsets, export metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.logs import get_logger
from pipeline.metrics import MODEL_METRIC
from pipeline.models import checkpoint
from pipeline.models.scorer import Scorer

log = get_logger("models")


def checkpoint_path(settings: Settings) -> Path:
    return settings.data_dir / "models" / settings.worker_id / f"{settings.worker_name}.pkl"


class ModelHost:
    """Owns the worker's ``Scorer``.

    The checkpoint records the next offset of every ``events.by_customer``
    partition the models have learned from. After a crash the worker resumes from
    Kafka's committed offsets, which are never ahead of the checkpoint's by more
    than the replayed tail, so a few events may be learned twice -- online models
    tolerate that; none is skipped.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = checkpoint_path(settings)
        self.offsets: dict[str, int] = {}
        restored = checkpoint.load(self.path)
        if restored is not None and isinstance(restored.state, Scorer):
            self.scorer: Scorer = restored.state
            self.offsets = dict(restored.offsets)
            log.info("models restored", path=str(self.path), written_at=restored.written_at)
        else:
            self.scorer = Scorer()
        self.scorer.refit_every = settings.model_refit_every
        self.scorer.background_fits = True  # seconds of scipy off the worker's event loop
        self.scorer.refit_min_s = settings.model_refit_min_s
        self.scorer.min_labels = settings.churn_min_labels

    def processed(self, batch: list[Any]) -> None:
        """Note the Kafka records (``topic``, ``partition``, ``offset``) the models learned from."""
        last: dict[tuple[str, int], int] = {}
        for record in batch:  # one pass without formatting: called for every record
            tp = (record.topic, record.partition)
            if record.offset >= last.get(tp, -1):
                last[tp] = record.offset
        offsets = self.offsets
        for (topic, partition), offset in last.items():
            key = f"{topic}:{partition}"
            offsets[key] = max(offsets.get(key, 0), offset + 1)

    def checkpoint(self) -> None:
        summary = self.scorer.summary()
        for name in ("rolling_auc", "log_loss", "drift_alarms", "labels_learned"):
            MODEL_METRIC.labels(name).set(float(summary["churn"][name]))
        checkpoint.save(self.path, self.scorer, self.offsets, summary)
