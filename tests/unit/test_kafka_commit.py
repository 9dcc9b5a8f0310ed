"""Offset commits wait out an absent group coordinator (a broker restart) instead of crashing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.kafka import commit
from pipeline.kafka.commit import commit_until_done

OFFSETS = [TopicPartition("t", 0, 10)]


class Consumer:
    def __init__(self, errors: list[int]) -> None:
        self.errors, self.commits = errors, 0

    def commit(self, **_kwargs: Any) -> None:
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        self.commits += 1


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit, "MAX_DELAY_S", 0.01)


def test_retried_while_the_coordinator_is_away() -> None:
    consumer = Consumer([KafkaError._WAIT_COORD, KafkaError.NOT_COORDINATOR, KafkaError._TRANSPORT])
    assert commit_until_done(consumer, OFFSETS, threading.Event(), "t")  # type: ignore[arg-type]
    assert consumer.commits == 1


def test_a_lost_assignment_is_not_retried() -> None:
    consumer = Consumer([KafkaError.ILLEGAL_GENERATION])
    assert not commit_until_done(consumer, OFFSETS, threading.Event(), "t")  # type: ignore[arg-type]
    assert consumer.commits == 0


def test_stop_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    consumer = Consumer([KafkaError._WAIT_COORD] * 100)
    assert not commit_until_done(consumer, OFFSETS, stop, "t")  # type: ignore[arg-type]


def test_a_stuck_consumer_gives_up_so_it_can_be_replaced() -> None:
    consumer = Consumer([KafkaError._WAIT_COORD] * 100)
    asked = []

    def stuck() -> bool:
        asked.append(1)
        return len(asked) >= 3  # stuck after the third failed attempt

    assert not commit_until_done(consumer, OFFSETS, threading.Event(), "t", stuck)  # type: ignore[arg-type]
    assert consumer.commits == 0 and len(consumer.errors) == 97
