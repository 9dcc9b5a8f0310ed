"""Bulk intake: the worker's input records straight from Faust's fetch loop, in lists.

Faust hands every record to an agent through its conductor and a stream: a decode, an
``Event``, a queue, and a ``wait_first`` with two futures per record in the fetch loop.
On the 2-core bench machine that is about 190 us per record, a ceiling of ~5,000
records/s for an agent that does nothing, while aiokafka itself fetches ~380,000
records/s (docs/worker-costs.md). Each event crosses two topics, so that overhead alone
held the worker near 2,500 events/s.

The worker keeps Faust for what it is good at -- group membership and the co-partitioned
assignment, table recovery from changelogs, offset commits from acknowledged offsets,
timers and the worker lifecycle -- and takes its two input topics in bulk: the consumer
below appends their records to an ``Intake``, and each stage loop takes everything that
accumulated while it processed the previous batch (batches grow with the load, one
record when idle). Records of every other topic (table changelogs during recovery) go
the usual way.

Rebalances keep Faust's rules: while flow is suspended nothing is appended, and Faust's
flow control clears the intakes on revocation and on resume, as it clears agent buffers;
a cleared record was never acknowledged, so the partition's next owner reads it again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, ClassVar

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import Message


class Intake:
    """Records of one topic waiting for their stage, oldest first."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._records: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: Message) -> None:
        self._records.append(record)
        self._ready.set()
        if len(self._records) >= self.maxsize:
            self._room.clear()

    def full(self) -> bool:
        return not self._room.is_set()

    async def wait_room(self) -> None:
        await self._room.wait()

    async def take(self, n: int) -> list[Message]:
        """Up to ``n`` records: whatever is there, or the next one to arrive."""
        while not self._records:
            self._ready.clear()
            await self._ready.wait()
        records = self._records
        batch = [records.popleft() for _ in range(min(n, len(records)))]
        if len(records) <= self.maxsize // 2:
            self._room.set()
        return batch

    def clear(self) -> None:
        """Drop what is buffered (Faust's flow control, on revocation and resume)."""
        self._records.clear()
        self._room.set()


class BulkConsumer(driver.Consumer):
    """Faust's aiokafka consumer, delivering the intakes' topics without the conductor."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs Kafka
        # Faust's own loop (faust.transport.consumer.Consumer._drain_messages), with the
        # per-record conductor call replaced by an append for the intakes' topics.
        intakes: dict[str, Intake] = getattr(self.transport, "intakes", {})
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        sleep = asyncio.sleep
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in ait:
                    since_yield += 1
                    if since_yield > 1000:
                        await sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # read already (Faust drops these too)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)  # compacted away
                    intake = intakes.get(tp.topic)
                    if intake is None:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    elif not suspended():
                        intake.put(message)
                        if intake.full():
                            await self.wait_first(intake.wait_room(), self.suspend_flow.wait())
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class BulkTransport(driver.Transport):
    Consumer: ClassVar[Any] = BulkConsumer
    intakes: dict[str, Intake]


def install(app: Any, intakes: dict[str, Intake]) -> None:
    """Route ``intakes``' topics of ``app`` through them; call before the app starts."""
    transport = BulkTransport(app.conf.broker_consumer, app)
    transport.intakes = intakes
    app.transport = transport
    for intake in intakes.values():
        app.flow_control.manage_queue(intake)
