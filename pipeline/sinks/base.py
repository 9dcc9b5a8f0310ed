"""The sink contract: buffer with ``add``, make durable with ``flush``.

Workers call ``flush`` before acknowledging the Kafka records a batch came from,
so an acknowledged record's effects are always durable (at-least-once); sinks
make repeated effects harmless (versions, deduplication tokens).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

T = TypeVar("T")


class Sink(ABC, Generic[T]):
    async def setup(self) -> None:
        """Create what the sink needs (scripts, tables)."""

    @abstractmethod
    def add(self, item: T) -> None:
        """Buffer one item."""

    @abstractmethod
    async def flush(self) -> int:
        """Write everything buffered; return how many items were written."""

    async def close(self) -> None:
        """Release connections."""
