"""asyncio waits that do not swallow a cancellation (Python 3.11's ``wait_for`` does)."""

from __future__ import annotations

import asyncio

import pytest

from common.aio import wait_event


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
