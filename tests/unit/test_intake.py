"""The worker's bulk intake: batches of what arrived, bounded, cleared by flow control."""

import asyncio

from pipeline.worker.intake import Intake


def test_take_returns_what_accumulated_up_to_the_batch_size_in_order():
    async def go() -> None:
        intake = Intake(maxsize=100)
        for i in range(7):
            intake.put(i)  # type: ignore[arg-type]
        assert await intake.take(5) == [0, 1, 2, 3, 4]
        assert await intake.take(5) == [5, 6]
        waiter = asyncio.ensure_future(intake.take(5))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # nothing there: waits for the next record
        intake.put(7)  # type: ignore[arg-type]
        assert await asyncio.wait_for(waiter, 1) == [7]

    asyncio.run(go())


def test_a_full_intake_holds_the_fetcher_until_half_is_taken():
    async def go() -> None:
        intake = Intake(maxsize=4)
        for i in range(4):
            intake.put(i)  # type: ignore[arg-type]
        assert intake.full()
        room = asyncio.ensure_future(intake.wait_room())
        await asyncio.sleep(0.01)
        assert not room.done()
        await intake.take(1)  # 3 left: above half
        await asyncio.sleep(0.01)
        assert not room.done()
        await intake.take(1)  # 2 left: room again
        await asyncio.wait_for(room, 1)
        assert not intake.full()

    asyncio.run(go())


def test_clear_drops_unacknowledged_records_and_frees_room():
    async def go() -> None:
        intake = Intake(maxsize=2)
        intake.put(1)  # type: ignore[arg-type]
        intake.put(2)  # type: ignore[arg-type]
        intake.clear()  # a rebalance: the partition's next owner reads them again
        assert len(intake) == 0 and not intake.full()
        intake.put(3)  # type: ignore[arg-type]
        assert await intake.take(10) == [3]

    asyncio.run(go())
