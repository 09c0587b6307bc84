"""asyncio waits that do not swallow a cancellation (Python 3.11's ``wait_for`` does)."""

from __future__ import annotations

import asyncio

import pytest

from common.aio import raise_if_cancelled, wait_event


def test_a_cancellation_that_arrives_as_the_event_is_set_is_not_swallowed() -> None:
    """The event is set and the waiting task cancelled in the same turn of the loop: the
    task must end cancelled. ``asyncio.wait_for`` on 3.11 returns True here instead."""

    async def scenario() -> None:
        event = asyncio.Event()
        waiting = asyncio.create_task(wait_event(event, 10))
        await asyncio.sleep(0)  # it is waiting now
        event.set()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())


def test_it_says_whether_the_event_was_set_or_the_time_ran_out() -> None:
    async def scenario() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        event.set()
        return timed_out, await wait_event(event, 0.01)

    assert asyncio.run(scenario()) == (False, True)


def test_a_loop_stops_when_a_library_swallowed_its_cancellation() -> None:
    """A call that waits with 3.11's ``asyncio.wait_for`` returns normally when the result
    and the cancellation arrive in the same turn; the loop must still end cancelled."""

    async def scenario() -> int:
        results: list[asyncio.Future[int]] = []
        rounds = 0

        async def library_call() -> int:  # what asyncua's next_event does inside
            results.append(asyncio.get_running_loop().create_future())
            # The very call the ban keeps out of our code: it is what is being tested.
            return await asyncio.wait_for(results[-1], 10)  # noqa: TID251

        async def reader() -> None:
            nonlocal rounds
            while True:
                await library_call()
                rounds += 1
                raise_if_cancelled()

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        results[-1].set_result(1)  # the answer and the cancellation in one turn
        task.cancel()
        await asyncio.wait({task}, timeout=5)  # a loop that ran on would still be running
        ended_cancelled = task.cancelled()
        if not task.done():  # the failure case: stop it for good
            task.cancel()
            await asyncio.wait({task})
        assert ended_cancelled
        return rounds

    assert asyncio.run(scenario()) == 1  # the swallowed round finished, none after it


def test_without_a_cancellation_the_check_does_nothing() -> None:
    async def scenario() -> None:
        raise_if_cancelled()

    asyncio.run(scenario())
